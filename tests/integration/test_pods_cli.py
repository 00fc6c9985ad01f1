"""`process-tracker pods` (commands/pods.py) against both simulators: a kubeconfig file for the real kubernetes
client, the real dataikuapi for DSS."""
import argparse
import io
import json

import pytest

from dev.dss_simulator.builders import instance, notebook, project, session
from dev.k8s_simulator import K8sSimulator, dss_pod
from process_tracker.commands import pods as pods_cmd
from process_tracker.dss import get_client
from process_tracker.errors import ConfigError, DSSForbidden


@pytest.fixture
def both(simulator, tmp_path):
    dss = simulator(instance(projects=[project(
        "CHURN", notebooks=[notebook("explore", [session("alice", session_id="s-alice-1")])])]))
    dss.set_abort_delay(0)
    k8s = K8sSimulator()
    k8s.add(dss_pod("dataiku-exec-remote-notebook-q7w8", project_key="CHURN", submitter="alice"), memory="1Gi")
    k8s.add(dss_pod("dataiku-exec-remote-notebook-gone", project_key="CHURN", submitter="dave"), metrics=False)
    k8s.start()
    yield dss, k8s, tmp_path
    k8s.stop()


def _run(both, *argv, token="admin-token", login=None):
    dss, k8s, tmp_path = both
    kubeconfig = k8s.write_kubeconfig(str(tmp_path / "kubeconfig"), token=token, context="dss-cluster")
    parser = argparse.ArgumentParser()
    pods_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["pods", "--kubeconfig", kubeconfig, "--context", "dss-cluster"] + list(argv))
    out = io.StringIO()
    code = args.func(args, lambda: get_client(url=dss.url, api_key=dss.key_for(login or "admin")), out)
    return code, out.getvalue()


def test_table_of_pods_joined_to_dss(both):
    code, text = _run(both)
    assert code == 0
    assert "dss/dataiku-exec-remote-notebook-q7w8" in text and "notebook_session s-alice-1" in text
    assert "orphan" in text and "DSS lists no notebook session of project churn by dave" in text
    assert "1.0 GiB" in text and "memory: requests/limits only" not in text


def test_json(both):
    code, text = _run(both, "--json", "--namespaces", "dss")
    doc = json.loads(text)
    assert code == 0 and doc["reachable"] is True and doc["errors"] == []
    assert {r["pod"]: r["status"] for r in doc["pods"]} == {"dataiku-exec-remote-notebook-q7w8": "joined",
                                                            "dataiku-exec-remote-notebook-gone": "orphan"}


def test_pods_only_without_dss(both):
    code, text = _run(both, "--json", "--no-dss")
    assert code == 0 and {r["status"] for r in json.loads(text)["pods"]} == {"not joined"}


def test_stop_goes_through_dss_dry_run_then_apply(both):
    dss, k8s, _ = both
    code, text = _run(both, "--stop", "dss/dataiku-exec-remote-notebook-q7w8")
    assert code == 0 and text.startswith("would_act: dry run: would unload the kernel") and dss.actions == []
    code, text = _run(both, "--stop", "dss/dataiku-exec-remote-notebook-q7w8", "--apply")
    assert code == 0 and text.startswith(("aborted", "abort_requested"))
    assert "s-alice-1" not in dss.session_ids()
    assert [r for r in k8s.requests if r.method == "DELETE"] == []


def test_delete_orphan_needs_the_opt_in_an_admin_and_apply(both):
    dss, k8s, _ = both
    code, text = _run(both, "--delete-orphan", "dss/dataiku-exec-remote-notebook-gone", "--apply")
    assert code == 1 and text.startswith("refused: deleting pods is turned off")
    with pytest.raises(DSSForbidden, match="needs a DSS administrator"):
        _run(both, "--delete-orphan", "dss/dataiku-exec-remote-notebook-gone", "--allow-delete", "--apply",
             login="alice")
    code, text = _run(both, "--delete-orphan", "dss/dataiku-exec-remote-notebook-gone", "--allow-delete")
    assert code == 0 and text.startswith("would_delete: dry run")
    assert [r for r in k8s.requests if r.method == "DELETE"] == []
    code, text = _run(both, "--delete-orphan", "dss/dataiku-exec-remote-notebook-gone", "--allow-delete", "--apply")
    assert code == 0 and text.startswith("deleted: deleted pod dss/dataiku-exec-remote-notebook-gone")


@pytest.mark.parametrize("argv, param", [
    (["--stop", "no-slash"], "--stop"),
    (["--stop", "dss/../etc"], "--stop"),
    (["--delete-orphan", "Bad_NS/x"], "--delete-orphan"),
    (["--namespaces", "a/b"], "--namespaces"),  # the option, not the macro parameter behind it
    (["--k8s-namespaces", "a/b"], "--namespaces"),
    (["--stop", "dss/x", "--no-dss"], "--no-dss"),
])
def test_bad_arguments_name_the_option(both, argv, param):
    with pytest.raises(ConfigError) as e:
        _run(both, *argv)
    assert e.value.param == param


def test_the_exporters_and_the_macros_k8s_option_names_work_here_too(both):
    """`--k8s-context`, `--k8s-namespaces`, `--k8s-in-cluster`, `--k8s-install-id`: the names the exporter and the
    macros' CLI mirrors use are accepted by `pods` beside its short ones."""
    code, text = _run(both, "--json", "--k8s-namespaces", "dss", "--k8s-context", "dss-cluster")
    assert code == 0 and "dataiku-exec-remote-notebook-q7w8" in text


def test_forbidden_and_unreachable_are_lines_not_crashes(both):
    code, text = _run(both, token="nothing-token")
    assert code == 0 and 'error: not allowed to list pods cluster-wide' in text
    dss, k8s, tmp = both
    k8s.stop()
    code, text = _run(both)
    assert code == 1 and "note: the Kubernetes cluster did not answer" in text


def test_registered_as_a_cli_command(both, capsys):
    from process_tracker import cli

    dss, k8s, tmp_path = both
    kubeconfig = k8s.write_kubeconfig(str(tmp_path / "kc"), token="reader-token")
    code = cli.main(["--url", dss.url, "--api-key", dss.admin_key, "pods", "--kubeconfig", kubeconfig, "--json"])
    assert code == 0 and len(json.loads(capsys.readouterr().out)["pods"]) == 2
