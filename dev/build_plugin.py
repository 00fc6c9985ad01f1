"""Build the DSS plugin zip with exactly what DSS needs: no tests, dev/, bench/, .venv or caches."""
import os
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ["plugin.json", "LICENSE"]
FOLDERS = ["python-lib", "python-runnables", "webapps", "code-env", "resource"]
SKIP_DIRS = {"__pycache__", ".pytest_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")


def plugin_files():
    for name in FILES:
        if os.path.exists(os.path.join(ROOT, name)):
            yield name
    for folder in FOLDERS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, folder)):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
            for filename in sorted(filenames):
                if not filename.endswith(SKIP_SUFFIXES):
                    yield os.path.relpath(os.path.join(dirpath, filename), ROOT)


def build(target):
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in plugin_files():
            archive.write(os.path.join(ROOT, path), path)
    return target


if __name__ == "__main__":
    print("built", build(sys.argv[1]))
