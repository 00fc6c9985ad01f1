"""Every face works when the `kubernetes` package is not installed: the k8s features then say "kubernetes client not
installed" as a note (macro header, webapp's pods block, exporter counters) or as the CLI's one error line, and the
rest of the run is unchanged. Each face runs in a subprocess whose `sitecustomize` makes `import kubernetes` fail
exactly as a missing package does (checked first), against the DSS simulator over HTTP."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from dev.dss_simulator import Simulator
from dev.dss_simulator.builders import load_demo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BLOCKER = '''
import sys


class _NoKubernetes:
    """`import kubernetes` fails as it does when the package is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "kubernetes" or name.startswith("kubernetes."):
            raise ModuleNotFoundError("No module named %r" % name, name=name)
        return None


sys.meta_path.insert(0, _NoKubernetes())
'''
NOTE = "kubernetes client not installed"


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """Run python code or the CLI with `kubernetes` not importable: (args, env) -> CompletedProcess."""
    site = tmp_path_factory.mktemp("no-kubernetes")
    (site / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join([str(site), os.path.join(ROOT, "python-lib"), os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "integration"), ROOT])

    def run(args, env=None):
        full = dict(os.environ, PYTHONPATH=path, **(env or {}))
        full.pop("DIP_HOME", None)
        return subprocess.run([sys.executable] + args, capture_output=True, text=True, env=full, timeout=120)

    return run


@pytest.fixture(scope="module")
def dss():
    s = Simulator(load_demo())
    s.start()
    yield s
    s.stop()


def test_the_package_is_really_missing_in_the_subprocess(blocked):
    done = blocked(["-c", "import kubernetes"])
    assert done.returncode == 1 and "ModuleNotFoundError: No module named 'kubernetes'" in done.stderr
    done = blocked(["-c", "import process_tracker.pods, process_tracker.pod_actions, process_tracker.pod_views, "
                          "process_tracker.exporter, process_tracker.macros; print('ok')"])
    assert done.stdout.strip() == "ok", done.stderr


def test_the_inventory_cli_and_macro_run_says_so_in_its_header(blocked, dss):
    done = blocked(["-m", "process_tracker", "activities", "--k8s", "--no-scan-host", "--json",
                    "--url", dss.url, "--api-key", dss.admin_key])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert NOTE in report["header"]
    assert any(r["kind"] == "notebook_session" for r in report["rows"])  # the rest of the run is there


def test_the_pods_cli_ends_with_one_line(blocked):
    done = blocked(["-m", "process_tracker", "pods", "--no-dss"])
    assert done.returncode == 1
    assert done.stderr.startswith("process-tracker: error: ") and NOTE in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_the_exporter_counts_the_failure_and_serves_the_host(blocked, tmp_path):
    code = textwrap.dedent("""
        from prometheus_client import generate_latest
        from prometheus_client.core import CollectorRegistry
        from process_tracker.exporter import Exporter, ExporterOptions
        from process_tracker.pods import PodSettings

        exporter = Exporter(ExporterOptions(pods=PodSettings(), dss_datadirs=(%r,)))
        assert exporter.scan_once() is True
        assert exporter.pods_once() is False
        registry = CollectorRegistry(auto_describe=False)
        registry.register(exporter)
        print(generate_latest(registry).decode())
    """ % str(tmp_path))
    done = blocked(["-c", code])
    assert done.returncode == 0, done.stderr
    assert "process_tracker_exporter_pods_reachable 0.0" in done.stdout
    assert "process_tracker_exporter_pod_listing_errors_total 1.0" in done.stdout
    assert "process_tracker_exporter_scans_total 1.0" in done.stdout
    assert NOTE in done.stderr  # the log line


def test_the_webapp_shows_a_pods_note_and_its_table(blocked, dss, tmp_path):
    code = textwrap.dedent("""
        import json, os
        from dev.dss_runtime import load_webapp
        from test_webapp_backend import Browser, as_user

        app = load_webapp(%r, config={"historyDir": %r, "k8sEnabled": True}).application
        table = Browser(app).get("/api/table", headers=as_user("admin")).get_json()
        print(json.dumps({"pods": table["pods"], "rows": len(table["rows"]),
                          "without": len(table["activities_without_process"])}))
        os._exit(0)
    """ % (os.path.join(ROOT, "webapps", "process-monitor"), str(tmp_path / "history")))
    done = blocked(["-c", code], env={"DKU_DSS_URL": dss.url, "DKU_API_KEY": dss.admin_key})
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads(done.stdout.strip().splitlines()[-1])
    assert body["pods"]["reachable"] is False and NOTE in body["pods"]["notes"][0]
    assert body["without"] > 0  # DSS's activities are still listed
