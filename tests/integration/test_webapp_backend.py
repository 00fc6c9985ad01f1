"""The webapp backend as DSS runs it (backend.py exec'd with `app` injected, via dev.dss_runtime.load_webapp),
talking to the simulated DSS with the real dataikuapi client over HTTP.

The history is written by a sampler elected in the test (it holds the writer lock first, so the webapp's own
sampler only reads), scanning hand-built records: the endpoints serve exactly those.
"""
import json
import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dev.dss_runtime import load_webapp
from dev.dss_simulator import Simulator
from dev.dss_simulator.builders import future, instance, notebook, project, session
from process_tracker.errors import ConfigError
from process_tracker.history import HistoryStore
from process_tracker.sampler import Sampler
from process_tracker.webapp import WebappOptions
from sample_records import ML_SECRET, demo_processes, snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEBAPP = os.path.join(ROOT, "webapps", "process-monitor")
K1 = "11111111-1111-4111-8111-111111111111"
K2 = "22222222-2222-4222-8222-222222222222"
CSRF = {"X-Process-Tracker-CSRF": "1"}


def as_user(login):
    return {"Cookie": "dss_sim_user=%s" % login}


class FakeScanner:
    """Stands in for host.Scanner: gives hand-built snapshots (or raises, to test the sampler's resilience)."""

    def __init__(self, processes=None, fail_first=0):
        self.processes = processes
        self.fail_first = fail_first
        self.calls = 0

    def scan(self):
        import time

        self.calls += 1
        if self.calls <= self.fail_first:
            raise OSError("cannot read /proc")
        return snapshot(time.time(), processes=self.processes)


def dss_instance():
    return instance(
        projects=[project("PRJ", notebooks=[
            notebook("Analysis", [session("alice", session_id="sess-1", kernel_id=K1, kernel_pid={"fleet": "kernel-1"},
                                          idle_for="3h", started_ago="5h")]),
            notebook("Quick", [session("bob", session_id="sess-2", kernel_id=K2, kernel_pid={"fleet": "kernel-2"},
                                       idle_for="1m", state="busy")]),
        ])],
        futures=[future("fut-1", "alice", display_name="Build dataset", started_ago="2h")],
    )


@pytest.fixture()
def sim():
    s = Simulator(dss_instance(), fleet_pids={"kernel-1": 110, "kernel-2": 111})
    with s.serve():
        yield s


class Browser:
    """A test client per request whose `Cookie` header becomes a real cookie (Werkzeug's test client drops a
    Cookie header passed as is): what a browser logged in to DSS sends."""

    def __init__(self, app):
        self.application = app

    def _client(self, kwargs):
        headers = dict(kwargs.pop("headers", None) or {})
        client = self.application.test_client()
        cookie = headers.pop("Cookie", None)
        if cookie:
            name, _, value = cookie.partition("=")
            client.set_cookie(name, value)
        kwargs["headers"] = headers
        return client

    def get(self, *args, **kwargs):
        return self._client(kwargs).get(*args, **kwargs)

    def post(self, *args, **kwargs):
        return self._client(kwargs).post(*args, **kwargs)


class Backend:
    """The loaded webapp plus the test's own elected sampler writing its history."""

    def __init__(self, sim, tmp_path, monkeypatch, config=None, processes=None):
        monkeypatch.setenv("DKU_DSS_URL", sim.url)
        monkeypatch.setenv("DKU_API_KEY", sim.admin_key)
        monkeypatch.delenv("DIP_HOME", raising=False)
        self.dir = str(tmp_path / "history")
        self.writer = Sampler(HistoryStore(self.dir), lambda: FakeScanner(processes), interval_seconds=10)
        assert self.writer.try_elect()
        assert self.writer.sample_once()
        app = load_webapp(WEBAPP, config=dict({"historyDir": self.dir}, **(config or {}))).application
        self.client = Browser(app)
        self.state = self.client.application.extensions["process_tracker"]

    def close(self):
        self.state.sampler.stop()
        self.writer.stop()


@pytest.fixture()
def backend(sim, tmp_path, monkeypatch):
    b = Backend(sim, tmp_path, monkeypatch, config={"allowedGroups": ["ops_team"]})
    yield b
    b.close()


def error_of(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert "Traceback" not in response.get_data(as_text=True)
    return body["error"]["message"]


def test_whoami_tells_who_may_act(backend):
    c = backend.client
    assert c.get("/api/whoami", headers=as_user("admin")).get_json() == {"user": "admin", "can_act": True,
                                                                          "reason": None, "admin": True}
    alice = c.get("/api/whoami", headers=as_user("alice")).get_json()
    assert alice["user"] == "alice" and alice["can_act"] is False and "not a DSS administrator" in alice["reason"]
    assert c.get("/api/whoami", headers=as_user("ops")).get_json()["can_act"] is True  # an allowed group
    nobody = c.get("/api/whoami").get_json()
    assert nobody["user"] is None and nobody["can_act"] is False


def test_reads_need_an_identified_user(backend):
    for path in ("/api/snapshot", "/api/history", "/api/table"):
        error_of(backend.client.get(path), 403, "identity_unknown")
        error_of(backend.client.get(path, headers=as_user("mallory")), 403, "identity_unknown")
        assert backend.client.get(path, headers=as_user("bob")).status_code == 200


def test_snapshot_serves_the_writer_sample_with_figures_and_self_metrics(backend):
    body = backend.client.get("/api/snapshot", headers=as_user("alice")).get_json()
    assert body["on_host"] is True and body["degraded_reason"] is None and body["host"] == "dss-host"
    roles = {r["role"]: r for r in body["roles"]}
    assert roles["jek"]["count"] == 2 and roles["jek"]["colour"]
    assert "not_dss" not in roles
    treemap = body["figures"]["treemap"]["data"][0]
    assert "i:/data/dss/r:jupyter_kernel/p:110" in treemap["ids"]
    assert len(body["figures"]["java_xmx"]["data"][0]["x"]) == 4
    kernels = body["figures"]["kernels_idle_memory"]["data"]
    assert kernels[0]["y"] == [1200.0, 300.0] and "PRJ / Analysis" in kernels[0]["customdata"][0]
    assert kernels[1]["y"] == [80.0]  # the kernel DSS does not list
    assert body["figures"]["cgroups"]["data"][0]["x"] == [1300.0]
    assert body["stats"]["seen"] == 11
    sampler = body["sampler"]
    assert sampler["interval_seconds"] == 10 and sampler["is_writer"] is False  # this process only reads
    assert sampler["last_sample_at"] == body["taken_at"] and sampler["cpu_percent_of_core"] >= 0
    assert sampler["db_bytes"] > 0


def test_history_windows_and_a_bad_window(backend):
    for window in ("1h", "24h", "7d"):
        body = backend.client.get("/api/history?window=%s" % window, headers=as_user("bob")).get_json()
        assert body["window"] == window and body["points"] == 1
        memory = body["figures"]["memory_by_role"]
        assert any(t["name"] == "jek" or t["y"] for t in memory["data"])
        assert all(t.get("stackgroup") == "memory" for t in memory["data"])
        assert body["figures"]["count_by_role"]["data"]
    message = error_of(backend.client.get("/api/history?window=2y", headers=as_user("bob")), 400, "bad_parameter")
    assert message.startswith("window:")


def test_table_joins_processes_to_activities(backend):
    body = backend.client.get("/api/table", headers=as_user("bob")).get_json()
    rows = {r["pid"]: r for r in body["rows"]}
    kernel = rows[110]
    assert kernel["activity_kind"] == "notebook_session" and kernel["activity_id"] == "sess-1"
    assert kernel["project_key"] == "PRJ" and kernel["owner"] == "alice" and kernel["actionable"] is True
    assert 3 * 3600 - 60 <= kernel["idle_seconds"] <= 3 * 3600 + 60
    assert kernel["rss_anon_bytes"] == 1200 * 1024 * 1024 and kernel["role_display"]
    assert rows[102]["activity_kind"] is None and rows[102]["actionable"] is False  # an idle JEK
    assert 200 not in rows  # not a DSS process
    assert [r["pid"] for r in body["orphans"]] == [116]
    without = {r["activity_id"]: r for r in body["activities_without_process"]}
    assert without["fut-1"]["pid"] is None and without["fut-1"]["actionable"] is True
    assert body["errors"] == []


def test_preview_then_apply_unloads_the_kernel_and_logs_it(backend, sim, caplog):
    c = backend.client
    payload = {"kind": "notebook_session", "project_key": "PRJ", "id": "sess-1"}
    preview = c.post("/api/actions/preview", json=payload, headers=dict(as_user("admin"), **CSRF))
    assert preview.status_code == 200, preview.get_data(as_text=True)
    body = preview.get_json()
    assert body["outcome"] == "would_act" and "admin" in body["reason"]
    assert body["activity"]["pid"] == 110 and body["activity"]["activity_name"]
    assert "sess-1" in sim.session_ids()  # a preview changes nothing
    with caplog.at_level(logging.INFO, logger="process_tracker"):
        applied = c.post("/api/actions/apply", json=dict(payload, confirm=True), headers=dict(as_user("admin"), **CSRF))
    assert applied.status_code == 200, applied.get_data(as_text=True)
    assert applied.get_json()["outcome"] == "aborted"
    assert "sess-1" not in sim.session_ids()
    assert any("admin" in r.getMessage() and "sess-1" in r.getMessage() and "aborted" in r.getMessage()
               for r in caplog.records if r.name == "process_tracker.webapp")
    table = c.get("/api/table", headers=as_user("admin")).get_json()
    assert "sess-1" not in {r["activity_id"] for r in table["rows"] + table["activities_without_process"]}


def test_a_member_of_an_allowed_group_can_act_and_others_cannot(backend, sim):
    c = backend.client
    payload = {"kind": "future", "project_key": None, "id": "fut-1", "confirm": True}
    message = error_of(c.post("/api/actions/apply", json=payload, headers=dict(as_user("alice"), **CSRF)),
                       403, "not_allowed")
    assert "alice" in message
    assert sim.phase("future", "fut-1") == "RUNNING"
    error_of(c.post("/api/actions/apply", json=payload, headers=CSRF), 403, "identity_unknown")
    error_of(c.post("/api/actions/apply", json=payload, headers=dict(as_user("nobody"), **CSRF)), 403,
             "identity_unknown")
    ok = c.post("/api/actions/apply", json=payload, headers=dict(as_user("ops"), **CSRF))
    assert ok.status_code == 200 and ok.get_json()["outcome"] in ("aborted", "abort_requested")
    assert sim.abort_requested("future", "fut-1")


def test_csrf_defences_refuse_cross_site_posts(backend, sim):
    c = backend.client
    payload = {"kind": "notebook_session", "project_key": "PRJ", "id": "sess-1", "confirm": True}
    admin = as_user("admin")
    error_of(c.post("/api/actions/apply", json=payload, headers=admin), 403, "csrf_refused")  # no header
    form = c.post("/api/actions/apply", data=payload, headers=dict(admin, **CSRF))  # a form post
    error_of(form, 403, "csrf_refused")
    plain = c.post("/api/actions/apply", data=json.dumps(payload), content_type="text/plain",
                   headers=dict(admin, **CSRF))
    error_of(plain, 403, "csrf_refused")
    foreign = c.post("/api/actions/apply", json=payload, headers=dict(admin, Origin="https://evil.example", **CSRF))
    error_of(foreign, 403, "csrf_refused")
    assert "sess-1" in sim.session_ids()
    same = c.post("/api/actions/preview", json=payload, headers=dict(admin, Origin="http://localhost", **CSRF))
    assert same.status_code == 200


@pytest.mark.parametrize(("body", "param"), [
    ({"kind": "notebook_session", "project_key": "PRJ"}, "id"),
    ({"kind": "notebook_session", "project_key": "PRJ", "id": ""}, "id"),
    ({"kind": "training", "project_key": "PRJ", "id": "x"}, "kind"),
    ({"kind": "job", "id": "x"}, "project_key"),
    ({"kind": "future", "id": 5}, "id"),
    ([1, 2], "body"),
])
def test_bad_action_bodies_name_the_parameter(backend, sim, body, param):
    response = backend.client.post("/api/actions/preview", json=body, headers=dict(as_user("admin"), **CSRF))
    assert error_of(response, 400, "bad_parameter").startswith(param + ":")
    assert sim.actions == [] or all("abort" not in r.path and r.method != "DELETE" for r in sim.actions)


def test_apply_needs_confirm_and_unlisted_activities_are_404(backend, sim):
    c = backend.client
    admin = dict(as_user("admin"), **CSRF)
    payload = {"kind": "notebook_session", "project_key": "PRJ", "id": "sess-1"}
    assert error_of(c.post("/api/actions/apply", json=payload, headers=admin), 400, "bad_parameter").startswith(
        "confirm:")
    error_of(c.post("/api/actions/apply", json=dict(payload, id="nope", confirm=True), headers=admin), 404,
             "not_listed")
    assert "sess-1" in sim.session_ids()


def test_an_api_that_is_down_gives_502_envelopes(backend, sim):
    sim.add_fault(path=".*", error_rate=1.0)
    backend.state.identities.clear()
    for path in ("/api/snapshot", "/api/history", "/api/table"):
        error_of(backend.client.get(path, headers=as_user("alice")), 502, "dss_unavailable")
    sim.clear_faults()
    sim.stop()
    message = error_of(backend.client.get("/api/table", headers=as_user("bob")), 502, "dss_unavailable")
    assert "cannot reach DSS" in message
    # actions fail closed
    error_of(backend.client.post("/api/actions/apply", json={"kind": "future", "id": "fut-1", "confirm": True},
                                 headers=dict(as_user("admin"), **CSRF)), 403, "identity_unknown")


def test_plotly_js_is_served_from_the_installed_package(backend):
    response = backend.client.get("/plotly.min.js")
    assert response.status_code == 200 and response.mimetype == "application/javascript"
    assert "max-age" in response.headers["Cache-Control"]
    assert b"plotly" in response.data[:2000].lower() and len(response.data) > 1_000_000


def test_degraded_mode_when_no_dss_backend_is_visible(sim, tmp_path, monkeypatch):
    containerised = [p for p in demo_processes() if p.role == "not_dss"]
    b = Backend(sim, tmp_path, monkeypatch, processes=containerised)
    try:
        body = b.client.get("/api/snapshot", headers=as_user("admin")).get_json()
        assert body["on_host"] is False and "container" in body["degraded_reason"]
        table = b.client.get("/api/table", headers=as_user("admin")).get_json()
        assert table["rows"] == [] and {r["activity_id"] for r in table["activities_without_process"]} == {
            "sess-1", "sess-2", "fut-1"}
    finally:
        b.close()


def test_no_response_leaks_a_secret_or_a_command_line(backend):
    c = backend.client
    texts = [c.get(p, headers=as_user("admin")).get_data(as_text=True)
             for p in ("/api/whoami", "/api/snapshot", "/api/history?window=1h", "/api/table")]
    texts.append(c.post("/api/actions/preview", json={"kind": "future", "id": "fut-1"},
                        headers=dict(as_user("admin"), **CSRF)).get_data(as_text=True))
    for text in texts:
        assert ML_SECRET not in text and "admin-key" not in text and "Traceback" not in text
    for suffix in ("", "-wal"):
        path = os.path.join(backend.dir, "history.sqlite" + suffix)
        if os.path.exists(path):
            with open(path, "rb") as f:
                assert ML_SECRET.encode() not in f.read()


def test_register_routes_is_idempotent_and_starts_one_sampler(backend):
    from process_tracker.webapp import register_routes

    app = backend.client.application
    state = backend.state
    assert register_routes(app, {"historyDir": backend.dir}) is state
    assert state.sampler.running and not state.sampler.is_writer


def test_two_samplers_elect_one_writer_and_the_other_takes_over(tmp_path):
    store_a, store_b = HistoryStore(str(tmp_path)), HistoryStore(str(tmp_path))
    a = Sampler(store_a, lambda: FakeScanner(), interval_seconds=10)
    b = Sampler(store_b, lambda: FakeScanner(), interval_seconds=10)
    try:
        assert a.sample_once() is True
        assert b.sample_once() is False and not b.is_writer
        assert store_b.latest().sampler["is_writer"] is True
        a.stop()  # the writer goes away (process exit releases the flock the same way)
        assert b.sample_once() is True and b.is_writer
    finally:
        a.stop()
        b.stop()


def test_the_sampler_survives_scan_failures_and_counts_them(tmp_path):
    scanner = FakeScanner(fail_first=2)
    s = Sampler(HistoryStore(str(tmp_path)), lambda: scanner, interval_seconds=10)
    try:
        assert s.sample_once() is False and s.sample_once() is False
        assert s.errors == 2 and s.last_error == "OSError"
        assert s.sample_once() is True
        assert HistoryStore(str(tmp_path)).latest().sampler["errors"] == 2
    finally:
        s.stop()


def test_the_sampler_thread_samples_and_stops(tmp_path):
    s = Sampler(HistoryStore(str(tmp_path)), lambda: FakeScanner(), interval_seconds=2)
    s.start()
    s.start()  # idempotent
    try:
        import time

        deadline = time.monotonic() + 20
        while s.samples == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.samples >= 1 and s.running
    finally:
        s.stop()
    assert not s.running and not s.is_writer


@pytest.mark.parametrize(("config", "param"), [
    ({"samplingIntervalSeconds": 1}, "samplingIntervalSeconds"),
    ({"samplingIntervalSeconds": "ten"}, "samplingIntervalSeconds"),
    ({"retentionDays": 365}, "retentionDays"),
    ({"allowedGroups": [1]}, "allowedGroups"),
    ({"topProcessesPerRole": 0}, "topProcessesPerRole"),
    ({"historyDir": 3}, "historyDir"),
    ({"actionWaitSeconds": -1}, "actionWaitSeconds"),
    ({"actionWaitSeconds": 600}, "actionWaitSeconds"),
])
def test_bad_webapp_params_name_the_parameter(config, param):
    with pytest.raises(ConfigError) as info:
        WebappOptions.from_config(config)
    assert info.value.param == param


def test_webapp_params_defaults_and_group_lists():
    options = WebappOptions.from_config({"allowedGroups": "ops_team, admins ,", "historyDir": " "})
    assert options == WebappOptions(sampling_interval_seconds=10.0, retention_days=7.0, history_dir=None,
                                    allowed_groups=("admins", "ops_team"), action_wait_seconds=10.0)
    assert WebappOptions.from_config({"actionWaitSeconds": 0}).action_wait_seconds == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
action_bodies = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["notebook_session", "future", "job", "training", ""]) | json_values,
    "project_key": st.sampled_from(["PRJ", "NOPE", None]) | json_values,
    "id": st.sampled_from(["sess-2", "fut-404", ""]) | json_values,
    "confirm": json_values,
}) | json_values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=action_bodies, window=st.text(max_size=6))
def test_hostile_bodies_and_params_never_crash_nor_act(backend, sim, body, window):
    preview = backend.client.post("/api/actions/preview", json=body, headers=dict(as_user("admin"), **CSRF))
    if body is None:  # no JSON at all: not even a JSON content type
        assert preview.status_code == 403 and preview.get_json()["error"]["code"] == "csrf_refused"
        return
    assert preview.status_code in (200, 400, 404), preview.get_data(as_text=True)
    if preview.status_code != 200:
        assert "Traceback" not in preview.get_data(as_text=True) and preview.get_json()["error"]["message"]
    history = backend.client.get("/api/history", query_string={"window": window}, headers=as_user("bob"))
    assert history.status_code in (200, 400)
    if history.status_code == 400:
        assert history.get_json()["error"]["message"].startswith("window:")
    assert sim.actions == [r for r in sim.actions if r.path.endswith("info-from-browser-headers")]


def test_with_the_real_scanner_and_fleet_the_views_join_real_processes(fleet, simulator, demo_instance, tmp_path,
                                                                         monkeypatch):
    """The webapp as deployed: its own sampler elected, the real host.Scanner over the real DSS-shaped fleet."""
    import time

    from dev.fleet import PLANTED_SECRETS

    sim = simulator(demo_instance, fleet_pids=fleet.pids)
    monkeypatch.setenv("DKU_DSS_URL", sim.url)
    monkeypatch.setenv("DKU_API_KEY", sim.admin_key)
    monkeypatch.setenv("DIP_HOME", fleet.dip_home)
    app = load_webapp(WEBAPP, config={"historyDir": str(tmp_path / "h"), "samplingIntervalSeconds": 2}).application
    state = app.extensions["process_tracker"]
    client = Browser(app)
    try:
        deadline = time.monotonic() + 60
        while state.sampler.samples == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.sampler.is_writer and state.sampler.samples >= 1, state.sampler.status()
        snap = client.get("/api/snapshot", headers=as_user("admin"))
        body = snap.get_json()
        assert body["on_host"] is True, body["degraded_reason"]
        roles = {r["role"] for r in body["roles"]}
        assert {"backend", "jek", "jupyter_kernel"} <= roles
        assert body["sampler"]["is_writer"] is True and body["sampler"]["scan_seconds"] > 0
        table = client.get("/api/table", headers=as_user("admin")).get_json()
        rows = {r["pid"]: r for r in table["rows"]}
        kernel = rows[fleet.pid("kernel-1")]
        assert kernel["activity_kind"] == "notebook_session" and kernel["project_key"] == "CHURN"
        assert fleet.pid("kernel-orphan") in {r["pid"] for r in table["orphans"]}
        uif = rows[fleet.pid("kernel-uif")]  # the UIF kernel's row carries the action; its wrappers are in it
        assert uif["activity_kind"] == "notebook_session" and uif["actionable"] is True
        assert {p["pid"] for p in uif["processes"]} == {fleet.pid(n) for n in ("kernel-uif", "kernel-uif-sudo",
                                                                              "kernel-uif-exec")}
        for wrapper in ("kernel-uif-sudo", "kernel-uif-exec"):
            assert fleet.pid(wrapper) not in rows
        texts = [snap.get_data(as_text=True), json.dumps(table),
                 client.get("/api/history?window=1h", headers=as_user("admin")).get_data(as_text=True)]
        for text in texts:
            for secret in PLANTED_SECRETS:
                assert secret not in text
        for path in (state.store.path, state.store.path + "-wal"):
            if os.path.exists(path):
                with open(path, "rb") as f:
                    data = f.read()
                assert not any(secret.encode() in data for secret in PLANTED_SECRETS)
    finally:
        state.sampler.stop()


# ------------------------------------------------------------------------------------------------------------
# precomputed views: while the page is watched the sampler computes them after each sample


class Ticked:
    """A webapp whose sampler the test ticks by hand (no thread), over a history with one sample. `writer`: the
    webapp's own sampler writes; otherwise another sampler (another backend process) writes and this one reads.
    The clock is fixed and a listing lives 10 minutes but expires before the next tick (an hour), so each warm-up
    lists DSS again and a view's key changes only with a new sample or listing."""

    def __init__(self, sim, tmp_path, writer=True, **options):
        from flask import Flask

        from process_tracker.webapp import register_routes

        directory = str(tmp_path / "history")
        self.other = None if writer else Sampler(HistoryStore(directory), lambda: FakeScanner(), interval_seconds=10)
        now = __import__("time").time()
        values = dict(history_dir=directory, client_factory=sim.client, scanner_factory=lambda: FakeScanner(),
                      clock=lambda: now, start_sampler=False, sampling_interval_seconds=3600.0, inventory_ttl_seconds=600.0)
        values.update(options)
        app = Flask("ticked")
        self.state = register_routes(app, WebappOptions(**values))
        self.client = Browser(app)
        self.sample()

    def sample(self):
        """A new sample, as the sampler thread's tick makes it: written (by whichever sampler writes), then the
        webapp's sampler ticks."""
        if self.other is not None:
            assert self.other.sample_once()
            assert self.state.sampler.tick() is False  # a reader: it notices the sample
        else:
            assert self.state.sampler.tick() is True
        return self.state.store.latest_taken_at()

    def close(self):
        self.state.sampler.stop()
        if self.other is not None:
            self.other.stop()


VIEWS = {"snapshot": "/api/snapshot", "table": "/api/table", "history:1h": "/api/history?window=1h",
         "history:7d": "/api/history?window=7d"}


@pytest.mark.parametrize("writer", [True, False], ids=["writer", "reader"])
def test_after_a_sample_the_watched_views_are_served_precomputed(sim, tmp_path, writer):
    t = Ticked(sim, tmp_path, writer=writer)
    try:
        for path in VIEWS.values():  # the page is open: its views are requested, hence watched
            assert t.client.get(path, headers=as_user("admin")).status_code == 200
        assert t.state.watched_views() == sorted(VIEWS)
        assert dict(t.state.computations) == {name: 1 for name in VIEWS}
        taken_at = t.sample()
        assert dict(t.state.computations) == {name: 2 for name in VIEWS}  # precomputed by the sampler's tick
        seen = len(sim.requests)
        for name, path in VIEWS.items():
            body = t.client.get(path, headers=as_user("admin")).get_json()
            if name in ("snapshot", "table"):
                assert body["taken_at"] == taken_at
        assert dict(t.state.computations) == {name: 2 for name in VIEWS}  # served as stored: not computed again
        assert sim.requests[seen:] == []  # nor listed: the warm-up listed DSS
        assert t.state.warm_ups == 1 and t.state.warm_errors == 0
        assert t.state.warm_views() == len(VIEWS)  # a tick without a new sample: the history is not computed
        assert t.state.computations["history:1h"] == 2 and t.state.computations["history:7d"] == 2
    finally:
        t.close()


@pytest.mark.parametrize("window_seconds", [None, 0.0], ids=["never-opened", "looked-at-too-long-ago"])
def test_when_nobody_watches_a_sample_lists_nothing_and_computes_nothing(sim, tmp_path, window_seconds):
    t = Ticked(sim, tmp_path, watch_window_seconds=window_seconds)
    try:
        if window_seconds is not None:  # the page was opened, longer ago than the watch window
            assert t.client.get("/api/snapshot", headers=as_user("admin")).status_code == 200
        seen = len(sim.requests)
        computed = dict(t.state.computations)
        t.sample()
        t.sample()
        assert sim.requests[seen:] == []  # no DSS listing (nor any other call) for nobody
        assert dict(t.state.computations) == computed and t.state.warm_ups == 0
        assert t.state.watched_views() == []
        # the next request computes the view itself (lazily), from the new sample
        body = t.client.get("/api/snapshot", headers=as_user("admin")).get_json()
        assert body["taken_at"] == t.state.store.latest_taken_at()
    finally:
        t.close()


def test_a_failing_warm_up_is_counted_and_never_stops_the_sampler(sim, tmp_path, monkeypatch, caplog):
    import process_tracker.webapp_state as webapp_state

    t = Ticked(sim, tmp_path)
    try:
        for path in VIEWS.values():
            assert t.client.get(path, headers=as_user("admin")).status_code == 200

        def broken(*args, **kwargs):
            raise RuntimeError("a bug in a view")

        with monkeypatch.context() as patch:
            patch.setattr(webapp_state, "join_table", broken)  # a bug in one view: the others are still warmed
            with caplog.at_level(logging.WARNING, logger="process_tracker.webapp"):
                t.sample()
        assert t.state.warm_errors == 1 and dict(t.state.computations) == {"snapshot": 2, "table": 1,
                                                                          "history:1h": 2, "history:7d": 2}
        assert any("warm-up" in r.getMessage() and "table" in r.getMessage() for r in caplog.records)
        sim.stop()  # DSS cannot be reached: every view is still warmed, and says so
        t.sample()
        assert t.state.warm_errors == 1 and dict(t.state.computations) == {"snapshot": 3, "table": 2,
                                                                          "history:1h": 3, "history:7d": 3}
        table = t.client.get("/api/table", headers=as_user("admin")).get_json()  # the identity is cached
        assert table["errors"] and t.state.computations["table"] == 2
        snap = t.client.get("/api/snapshot", headers=as_user("admin")).get_json()
        assert "DSS listing call(s) failed" in snap["api_error"] and t.state.computations["snapshot"] == 3
        with monkeypatch.context() as patch:  # even a failing hook: counted, and the sampler goes on
            patch.setattr(t.state.sampler, "on_tick", broken)
            samples = t.state.sampler.samples
            t.sample()
        assert t.state.sampler.samples == samples + 1 and t.state.sampler.tick_errors == 1
    finally:
        t.close()


def test_unknown_api_paths_and_methods_get_the_json_envelope(backend):
    c = backend.client
    error_of(c.get("/api/nothing-here", headers=as_user("admin")), 404, "not_found")
    error_of(c.get("/api/actions/apply", headers=as_user("admin")), 405, "method_not_allowed")


def test_a_revoked_run_as_key_is_told_apart_from_an_unknown_session(backend, sim):
    unknown = error_of(backend.client.get("/api/table", headers=as_user("mallory")), 403, "identity_unknown")
    assert "log in again" in unknown
    sim.revoke_key(sim.admin_key)
    revoked = error_of(backend.client.get("/api/table", headers=as_user("alice")), 403, "identity_unknown")
    assert "this webapp's own API key" in revoked and sim.admin_key not in revoked


def test_the_footer_versions_come_from_dss_and_the_installed_client(backend):
    from importlib import metadata

    assert backend.client.get("/api/table", headers=as_user("admin")).status_code == 200  # the first listing
    body = backend.client.get("/api/snapshot", headers=as_user("admin")).get_json()
    assert body["versions"] == {"dss": "15.2.0", "dataikuapi": metadata.version("dataiku-api-client")}
