"""Host views never wait on DSS (issue 12.2): with only `GET /futures/` slowed to 45 s, the snapshot, history and
table answer from the last sample and the last listing, and say how old the listing is.

The only time bound here is "did not wait for the 45 s fault": each request runs in a thread joined with a
generous bound (20 s) well below the fault's latency; nothing else is timed."""
import threading

import pytest

from dev.dss_simulator import Simulator
from test_webapp_backend import Backend, as_user, dss_instance

LATENCY_SECONDS = 45
PATHS = ("/api/snapshot", "/api/history?window=1h", "/api/table")


@pytest.fixture()
def sim():
    s = Simulator(dss_instance(), fleet_pids={"kernel-1": 110, "kernel-2": 111})
    with s.serve():
        yield s


def answered_without_waiting(client, path, bound_seconds=20):
    """The answer of GET `path`, or None when it was still waiting after `bound_seconds` (the fault is 45 s)."""
    answers = []
    thread = threading.Thread(target=lambda: answers.append(client.get(path, headers=as_user("admin"))), daemon=True)
    thread.start()
    thread.join(bound_seconds)
    return None if thread.is_alive() else answers[0]


def test_a_cold_page_on_a_slow_dss_gets_its_host_views_without_waiting(sim, tmp_path, monkeypatch):
    sim.add_fault(path="/futures/.*", latency=LATENCY_SECONDS)
    b = Backend(sim, tmp_path, monkeypatch)
    try:
        for path in PATHS:
            response = answered_without_waiting(b.client, path)
            assert response is not None, "%s waited for the slow DSS call" % path
            assert response.status_code == 200, response.get_data(as_text=True)
        snap = b.client.get("/api/snapshot", headers=as_user("admin")).get_json()
        assert snap["taken_at"] and snap["roles"]  # the host view, from the last sample
        assert snap["listing"]["slow"] is True and "a call is slow" in snap["listing"]["note"]
        table = b.client.get("/api/table", headers=as_user("admin")).get_json()
        assert {r["pid"] for r in table["rows"]} >= {110, 111}  # host rows, not yet joined
        assert table["listing"]["slow"] is True
    finally:
        b.close()


def test_when_dss_becomes_slow_the_views_serve_the_last_listing_and_say_how_old(sim, tmp_path, monkeypatch):
    b = Backend(sim, tmp_path, monkeypatch)
    try:
        first = b.client.get("/api/table", headers=as_user("admin")).get_json()
        assert first["rows"] and first["listing"]["slow"] is False and first["listing"]["note"] is None
        sim.add_fault(path="/futures/.*", latency=LATENCY_SECONDS)
        b.state.listing.forget()  # the listing expired: the next views ask DSS again
        for path in PATHS:
            response = answered_without_waiting(b.client, path)
            assert response is not None and response.status_code == 200, path
        table = b.client.get("/api/table", headers=as_user("admin")).get_json()
        kernel = {r["pid"]: r for r in table["rows"]}[110]
        assert kernel["activity_id"] == "sess-1"  # still joined, from the last listing
        listing = table["listing"]
        assert listing["slow"] is True and listing["age_seconds"] >= 0
        assert listing["note"].startswith("DSS listing from ") and listing["note"].endswith("a call is slow")
        assert b.state.listing.refreshes == 2  # one refresh at a time, however many views asked
    finally:
        b.close()
