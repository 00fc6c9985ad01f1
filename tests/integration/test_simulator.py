"""The DSS simulator's transport, identity, errors, versions, faults and action log, driven with the real
dataikuapi client over HTTP (raw `requests` only to check transport details)."""
import json
import os
import signal
import subprocess
import sys

import dataikuapi
import pytest
import requests
from dataikuapi.dss.jupyternotebook import DSSNotebookSession
from dataikuapi.utils import DataikuException

from dev.dss_simulator import Simulator
from dev.dss_simulator.builders import (
    DEMO_INSTANCE,
    future,
    instance,
    job,
    notebook,
    project,
    session,
)
from dev.dss_simulator.loader import parse_duration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



def running_jobs(client, all_users=True, project_key=None):
    """Running jobs through their endpoint: the client methods for it exist in dataikuapi 15.x only, and these
    tests run with the clients of DSS 12 to 15."""
    if project_key:
        return client._perform_json("GET", "/projects/%s/jobs/running/" % project_key)
    return client._perform_json("GET", "/jobs/running/", params={"allUsers": all_users})


def job_ids(items):
    """Ids of job list items: raw dicts (dataikuapi < 15) or DSSJobListItems (15.x) alike."""
    return [j["def"]["id"] for j in items]

def small():
    return instance(
        projects=[
            project("CHURN", notebooks=[notebook("explore", [session("alice", session_id="s-alice")])],
                    jobs=[job("j-alice", "alice"), job("j-bob", "bob")]),
            project("FRAUD", jobs=[job("j-fraud", "bob")]),
        ],
        futures=[future("f-alice", "alice"), future("f-bob", "bob")],
    )


def api(sim, path):
    return sim.url + "/dip/publicapi" + path


def assert_dss_error(response, status, error_type_suffix):
    assert response.status_code == status
    body = response.json()
    assert set(body) >= {"errorType", "message", "detailedMessage"}
    assert body["errorType"].startswith("com.dataiku.") and body["errorType"].endswith(error_type_suffix)


# ----- transport and identity --------------------------------------------------------------------------------
def test_key_as_basic_username_or_ticket_header_and_401_for_unknown_missing_or_revoked_keys(simulator):
    sim = simulator(small())
    assert requests.get(api(sim, "/auth/info"), auth=(sim.admin_key, "")).json()["authIdentifier"] == "admin"
    ticket = requests.get(api(sim, "/auth/info"), headers={"X-DKU-APITicket": sim.ticket_for("bob")})
    assert ticket.json()["authIdentifier"] == "bob"
    with_ticket = dataikuapi.DSSClient(sim.url, internal_ticket=sim.ticket_for("ops"))
    assert with_ticket.get_auth_info()["authIdentifier"] == "ops"
    # a ticket is issued for one user; an API key is not a ticket, and an unknown ticket is refused
    assert_dss_error(requests.get(api(sim, "/auth/info"), headers={"X-DKU-APITicket": sim.key_for("bob")}), 401,
                     "NotAuthenticatedException")
    assert_dss_error(requests.get(api(sim, "/auth/info"), headers={"X-DKU-APITicket": "made-up"}), 401,
                     "NotAuthenticatedException")
    assert_dss_error(requests.get(api(sim, "/projects/")), 401, "NotAuthenticatedException")
    assert_dss_error(requests.get(api(sim, "/projects/"), auth=("nope", "")), 401, "NotAuthenticatedException")

    alice = sim.client("alice")
    assert alice.get_auth_info()["groups"] == ["data_scientists"]
    sim.revoke_key(sim.key_for("alice"))
    with pytest.raises(DataikuException, match="NotAuthenticatedException"):
        alice.get_auth_info()
    assert sim.requests[-1].status == 401


def test_json_bodies_without_content_type_and_capitalised_query_booleans(simulator):
    sim = simulator(small())
    body = json.dumps({"name": "Clean-up", "type": "step_based", "params": {"steps": []}})
    raw = requests.post(api(sim, "/projects/CHURN/scenarios/"), data=body, auth=(sim.admin_key, ""))
    assert "Content-Type" not in raw.request.headers
    assert raw.status_code == 200 and raw.json()["id"] == "CLEANUP"
    for flag in ("True", "true"):
        listed = requests.get(api(sim, "/futures/"), params={"allUsers": flag, "withScenarios": "False"},
                              auth=(sim.admin_key, ""))
        assert {f["jobId"] for f in listed.json()} == {"f-alice", "f-bob"}
    bad = requests.post(api(sim, "/projects/CHURN/scenarios/"), data="{not json", auth=(sim.admin_key, ""))
    assert_dss_error(bad, 400, "Exception")


def test_unknown_endpoints_and_objects_give_404_with_a_dss_error_body(simulator):
    sim = simulator(small())
    auth = (sim.admin_key, "")
    assert_dss_error(requests.get(api(sim, "/no/such/thing"), auth=auth), 404, "NotFoundException")
    assert_dss_error(requests.get(api(sim, "/projects/NOPE/jobs/"), auth=auth), 404, "NotFoundException")
    client = sim.client()
    for call in (lambda: client.get_future("nope").peek_state(),
                 lambda: client.get_project("CHURN").get_job("nope").get_status(),
                 lambda: client.get_project("CHURN").get_jupyter_notebook("nope").get_sessions(),
                 lambda: client.get_project("CHURN").get_scenario("NOPE").get_status(),
                 lambda: client.get_project("CHURN").get_webapp("nope").get_state(),
                 lambda: client.get_group("nope").get_definition()):
        with pytest.raises(DataikuException, match="NotFoundException"):
            call()


def test_instance_info_projects_users_and_groups(simulator):
    sim = simulator(small())
    client = sim.client()
    info = client.get_instance_info()
    assert (info.node_id, info.node_type, info.raw["dssVersion"]) == ("dss-sim", "DESIGN", "15.2.0")
    assert client.list_project_keys() == ["CHURN", "FRAUD"]
    assert [u["login"] for u in client.list_users()] == ["admin", "alice", "bob", "ops"]
    assert client.get_user("bob").get_settings().get_raw()["groups"] == ["data_scientists"]
    assert {g["name"]: g["admin"] for g in client.list_groups()} == {
        "administrators": True, "data_scientists": False, "ops_team": False}
    assert client.get_group("administrators").get_definition()["admin"] is True
    with pytest.raises(DataikuException, match="NotFoundException"):
        client.get_user("nobody").get_settings()


def test_identity_from_browser_headers_reads_the_dss_sim_user_cookie(simulator):
    sim = simulator(small())
    client = sim.client()
    info = client.get_auth_info_from_browser_headers({"Cookie": "other=1; dss_sim_user=ops", "Host": "x"})
    assert (info["authIdentifier"], info["groups"]) == ("ops", ["ops_team"])
    assert client.get_auth_info_from_browser_headers({"cookie": "dss_sim_user=admin"})["groups"] == ["administrators"]
    for headers in ({"Host": "x"}, {"Cookie": "dss_sim_user=mallory"}):
        with pytest.raises(DataikuException, match="NotAuthenticatedException"):
            client.get_auth_info_from_browser_headers(headers)


# ----- permissions ---------------------------------------------------------------------------------------------
def test_admin_only_calls_refuse_non_admins_with_403(simulator):
    sim = simulator(small())
    alice = sim.client("alice")
    for call in (lambda: alice.list_futures(all_users=True), lambda: alice.list_running_scenarios(all_users=True),
                 lambda: running_jobs(alice, all_users=True), alice.list_running_notebooks, alice.list_users,
                 alice.list_groups, lambda: alice.get_group("administrators").get_definition()):
        with pytest.raises(DataikuException, match="UnauthorizedException"):
            call()
    assert {r.status for r in sim.requests} == {403}


def test_non_admins_list_and_act_on_their_own_objects_only(simulator):
    sim = simulator(small())
    alice = sim.client("alice")
    assert [f["jobId"] for f in alice.list_futures()] == ["f-alice"]
    assert job_ids(running_jobs(alice, all_users=False)) == ["j-alice"]
    assert job_ids(alice.get_project("CHURN").list_jobs()) == ["j-alice"]
    assert set(job_ids(sim.client().get_project("CHURN").list_jobs())) == {"j-alice", "j-bob"}
    with pytest.raises(DataikuException, match="UnauthorizedException"):
        alice.get_future("f-bob").abort()
    with pytest.raises(DataikuException, match="UnauthorizedException"):
        alice.get_project("CHURN").get_job("j-bob").abort()
    bob_view = DSSNotebookSession(sim.client("bob"), {"projectKey": "CHURN", "notebookName": "explore",
                                                     "sessionId": "s-alice"})
    with pytest.raises(DataikuException, match="UnauthorizedException"):
        bob_view.unload()
    assert sim.phase("future", "f-bob") == "RUNNING" and sim.phase("job", "j-bob") == "RUNNING"
    assert sim.session_ids() == ["s-alice"]
    alice.get_future("f-alice").abort()
    assert sim.phase("future", "f-alice") == "ABORTED"


# ----- versions ----------------------------------------------------------------------------------------------
def test_before_dss_15_running_job_endpoints_are_404_and_project_job_lists_still_work(simulator):
    sim = simulator(small())
    client = sim.client()
    assert len(running_jobs(client)) == 3
    sim.dss_version = "14.3.1"
    assert client.get_instance_info().raw["dssVersion"] == "14.3.1"
    with pytest.raises(DataikuException, match="NotFoundException"):
        running_jobs(client)
    with pytest.raises(DataikuException, match="NotFoundException"):
        running_jobs(client, project_key="CHURN")
    assert_dss_error(requests.get(api(sim, "/jobs/running/"), auth=(sim.admin_key, "")), 404, "NotFoundException")
    assert set(job_ids(client.get_project("CHURN").list_jobs())) == {"j-alice", "j-bob"}
    sim.missing_endpoint_status = 405  # some DSS answer 400 or 405 for a route they lack
    assert_dss_error(requests.get(api(sim, "/jobs/running/"), auth=(sim.admin_key, "")), 405,
                     "DKUIllegalArgumentException")


# ----- faults ------------------------------------------------------------------------------------------------
def test_error_rate_gives_dss_500s_drawn_from_a_seeded_rng(simulator):
    sim = simulator(small())
    client = sim.client()
    sim.add_fault(path=r"^/futures/$", method="GET", error_rate=0.5)

    def outcomes():
        sim.seed(7)
        out = []
        for _ in range(30):
            try:
                client.list_futures()
                out.append("ok")
            except DataikuException as e:
                assert "CodedException" in str(e)
                out.append("500")
        return out

    first = outcomes()
    assert first == outcomes()
    assert 3 < first.count("500") < 27
    assert client.list_project_keys() == ["CHURN", "FRAUD"]  # other routes unaffected
    sim.clear_faults()
    client.list_futures()


def test_malformed_json_is_a_200_the_client_cannot_parse(simulator):
    sim = simulator(small())
    sim.add_fault(path="^/projects/$", malformed=True)
    raw = requests.get(api(sim, "/projects/"), auth=(sim.admin_key, ""))
    assert raw.status_code == 200
    with pytest.raises(ValueError):
        raw.json()
    with pytest.raises(ValueError):
        sim.client().list_project_keys()


def test_a_failing_project_answers_500_on_every_call_under_it(simulator):
    sim = simulator(dict(small(), faults={"failingProjects": ["FRAUD"]}))
    client = sim.client()
    with pytest.raises(DataikuException, match="CodedException"):
        client.get_project("FRAUD").list_jobs()
    with pytest.raises(DataikuException, match="CodedException"):
        client.get_project("FRAUD").list_jupyter_notebooks(active=True)
    assert len(client.get_project("CHURN").list_jobs()) == 2
    assert client.list_project_keys() == ["CHURN", "FRAUD"]
    sim.fail_project("FRAUD", failing=False)
    assert len(client.get_project("FRAUD").list_jobs()) == 1


def test_latency_and_hang_outlast_a_client_timeout_and_end_when_the_server_stops(simulator):
    sim = simulator(dict(small(), faults={"routes": [{"path": "^/futures/", "method": "GET", "latency": "30s"}]}))
    sim.set_hang_seconds(30)
    auth = (sim.admin_key, "")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(api(sim, "/futures/"), auth=auth, timeout=0.5)
    assert requests.delete(api(sim, "/futures/f-bob"), auth=auth, timeout=10).status_code == 204  # not GET
    sim.clear_faults()
    sim.add_fault(path="^/projects/CHURN/", hang=True)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(api(sim, "/projects/CHURN/jobs/"), auth=auth, timeout=0.5)
    assert requests.get(api(sim, "/projects/FRAUD/jobs/"), auth=auth, timeout=10).status_code == 200
    sim.stop()  # ends the pending latency and hang at once (teardown does not wait for them)


# ----- action log, loading, fleet pids, startable alone ---------------------------------------------------
def test_the_action_log_records_changes_with_caller_and_status(simulator, manual_clock):
    sim = simulator(small(), clock=manual_clock)
    alice, admin = sim.client("alice"), sim.client()
    with pytest.raises(DataikuException):
        alice.get_future("f-bob").abort()
    manual_clock.advance(5)
    admin.get_future("f-bob").abort()
    admin.get_project("CHURN").get_job("j-alice").abort()
    sim.client("alice").get_project("CHURN").get_jupyter_notebook("explore").unload()
    got = [(a.method, a.path, a.user, a.status) for a in sim.actions]
    assert got == [("DELETE", "/futures/f-bob", "alice", 403), ("DELETE", "/futures/f-bob", "admin", 204),
                   ("POST", "/projects/CHURN/jobs/j-alice/abort", "admin", 200),
                   ("DELETE", "/projects/CHURN/jupyter-notebooks/explore/sessions/s-alice", "alice", 200)]
    assert sim.actions[1].time == sim.actions[0].time + 5
    assert all(r.method == "GET" for r in sim.requests if r not in sim.actions)


def test_instance_times_are_relative_to_the_clock_and_fleet_pids_resolve(simulator, manual_clock, demo_instance):
    sim = simulator(demo_instance, clock=manual_clock, fleet_pids={"kernel-1": 4242, "jek-1": 4343, "webapp-1": 77})
    client = sim.client()
    churn = client.get_project("CHURN")
    (s,) = churn.get_jupyter_notebook("Churn exploration").get_sessions()
    now_ms = int(manual_clock() * 1000)
    assert s["kernelPid"] == 4242 and s["kernelId"] == "11111111-1111-4111-8111-111111111111"
    assert now_ms - s["sessionStartTime"] == 9 * 86400 * 1000
    assert now_ms - s["kernelLastActivityTime"] == 8 * 86400 * 1000
    (fraud,) = client.get_project("FRAUD").get_jupyter_notebook("Fraud features").get_sessions()
    assert "kernelPid" not in fraud  # kernel-2 not given: the field is absent
    pids = {j["def"]["id"]: j.get("kernelPid") for j in running_jobs(client)}
    assert sorted(pids.values(), key=str) == [4343, None]
    assert churn.get_webapp("Xb3k9Qa").get_state().state["futureInfo"]["payload"]["extras"]["pid"] == 77
    manual_clock.advance(3600)
    (s,) = churn.get_jupyter_notebook("Churn exploration").get_sessions()
    assert now_ms + 3600 * 1000 - s["kernelLastActivityTime"] == (8 * 86400 + 3600) * 1000


def test_bad_instance_values_are_named():
    with pytest.raises(ValueError, match=r"futures\[f1\]\.startedAgo: bad duration '3 days'"):
        Simulator(instance(futures=[future("f1", "alice", started_ago="3 days")]))
    with pytest.raises(ValueError, match="unknown user 'mallory'"):
        Simulator(instance(futures=[future("f1", "mallory")]))
    with pytest.raises(ValueError, match="duplicate job id 'j'"):
        Simulator(instance(projects=[project("A", jobs=[job("j", "bob")]), project("B", jobs=[job("j", "bob")])]))
    assert [parse_duration(v, "x") for v in (5, "250ms", "90s", "5m", "3h", "9d", "2w")] == [
        5, 0.25, 90, 300, 10800, 777600, 1209600]
    assert parse_duration("never", "x", allow_never=True) is None


def test_started_alone_it_prints_url_and_admin_key_and_stops_on_ctrl_c():
    proc = subprocess.Popen(
        [sys.executable, "-m", "dev.dss_simulator", "--port", "0", "--instance", DEMO_INSTANCE,
         "--fleet-pids", '{"kernel-1": 999}'],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url_line, key_line = proc.stdout.readline().strip(), proc.stdout.readline().strip()
        assert url_line.startswith("url=http://127.0.0.1:") and key_line.startswith("admin_key=")
        client = dataikuapi.DSSClient(url_line[4:], key_line[10:])
        assert client.get_auth_info()["authIdentifier"] == "admin"
        notebooks = client.list_running_notebooks()
        pids = [s.get("kernelPid") for nb in notebooks for s in nb.state["activeSessions"]]
        assert 999 in pids
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_the_route_table_flags_requests_steered_outside_a_kind_and_unknown_paths(simulator):
    sim = simulator(small())
    client = sim.client()
    client._perform_json("GET", "/futures/../admin/users/")  # requests removes the dot segment: /admin/users/
    with pytest.raises(DataikuException):
        client._perform_json("GET", "/no/such/route")
    client.list_futures(all_users=True)
    assert [r.path for r in sim.unrouted_requests()] == ["/no/such/route"]
    assert [r.path for r in sim.unrouted_requests(["future"])] == ["/admin/users/", "/no/such/route"]
    sim.replace_answer("^/futures/$", {"not": "a list"})
    assert client._perform_json("GET", "/futures/") == {"not": "a list"}
    sim.clear_faults()
    assert isinstance(client._perform_json("GET", "/futures/"), list)
