"""`make plugin` builds a zip with exactly what DSS needs; the CLI installs and answers --help."""
import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_plugin_zip_contains_exactly_what_dss_needs(tmp_path):
    target = tmp_path / "plugin.zip"
    subprocess.run([sys.executable, os.path.join(ROOT, "dev", "build_plugin.py"), str(target)], check=True)
    names = zipfile.ZipFile(target).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "plugin.json" in names
    assert tops <= {"plugin.json", "LICENSE", "python-lib", "python-runnables", "webapps", "code-env", "resource"}
    assert {"python-lib", "code-env"} <= tops
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "egg-info" in n]
    assert not [n for n in names if "/dataiku/" in n], "the stand-in dataiku package must not ship"
    assert "python-lib/process_tracker/__init__.py" in names
    assert "code-env/python/spec/requirements.txt" in names


def test_cli_help_from_the_installed_console_script():
    exe = os.path.join(os.path.dirname(sys.executable), "process-tracker")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "usage: process-tracker" in out
    assert "--api-key" in out


def test_cli_without_a_command_prints_usage_and_exits_2():
    proc = subprocess.run([sys.executable, "-m", "process_tracker"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "usage: process-tracker" in proc.stdout


def test_plugin_code_never_imports_dataiku_at_module_level():
    """Importing every python-lib module without a `dataiku` package on the path must work (CLI outside DSS)."""
    code = (
        "import sys, pkgutil, importlib; sys.path = [p for p in sys.path if not p.endswith('tests')];"
        "import process_tracker;"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(process_tracker.__path__, 'process_tracker.') if not m.name.endswith('__main__')];"
        "assert 'dataiku' not in sys.modules, 'dataiku imported'"
    )
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python-lib"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd="/")


def test_the_client_matrix_has_one_release_per_dss_major_and_the_code_env_none():
    """`make test` runs the DSS-facing suites with the client each DSS ships: the latest 12.x, 13.x, 14.x (cached
    venvs) and the pinned 15.x (.venv). The plugin's code env installs no client: DSS provides its own."""
    import re

    with open(os.path.join(ROOT, "Makefile")) as f:
        old = re.search(r"^OLD_CLIENTS := (.*)$", f.read(), re.M).group(1).split()
    with open(os.path.join(ROOT, "requirements-dev.txt")) as f:
        pinned = re.search(r"^dataiku-api-client==(\S+)$", f.read(), re.M).group(1)
    assert old == ["12.6.4", "13.5.6", "14.7.5"]
    assert [v.split(".")[0] for v in old + [pinned]] == ["12", "13", "14", "15"]
    with open(os.path.join(ROOT, "code-env", "python", "spec", "requirements.txt")) as f:
        assert "dataiku-api-client" not in f.read()
