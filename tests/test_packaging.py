"""`make plugin` builds a zip with exactly what DSS needs; the CLI installs and answers --help."""
import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
