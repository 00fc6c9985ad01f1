"""What the page says, in real headless Chromium, when DSS is slow (issue 12.2) and when its history file was
damaged (issue 12.5), and the versions in its footer. The webapp is served the way DSS serves it
(dev/webapp_server.py) in this process, against a simulated DSS whose `GET /futures/` takes 45 s."""
import os
import sqlite3
import time
from urllib.parse import quote

import pytest

from dev.dss_runtime import load_webapp_app
from dev.dss_simulator.builders import future, instance, notebook, project, session
from dev.webapp_server import WEBAPP_DIR, WebappServer, build_app, view_path

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from dev.dss_simulator import Simulator

    sim = Simulator(instance(
        projects=[project("PRJ", notebooks=[notebook("Analysis", [session("alice", session_id="sess-1",
                                                                          idle_for="3h", started_ago="5h")])])],
        futures=[future("fut-1", "alice", display_name="Build dataset", started_ago="2h")],
    ))
    mp = pytest.MonkeyPatch()
    with sim.serve() as url:
        mp.setenv("DKU_DSS_URL", url)
        mp.setenv("DKU_API_KEY", sim.admin_key)
        mp.delenv("DIP_HOME", raising=False)
        config = {"historyDir": str(tmp_path_factory.mktemp("h")), "samplingIntervalSeconds": 2}
        backend = load_webapp_app(WEBAPP_DIR, config)
        state = backend.extensions["process_tracker"]
        try:
            deadline = time.monotonic() + 120  # the sampler scans this whole (busy, shared) host: its first sample
            while state.store.latest_taken_at() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert state.store.latest_taken_at() is not None, state.sampler.status()
            with WebappServer(build_app(backend, config), port=0) as server:
                yield server, sim, backend.extensions["process_tracker"]
        finally:
            backend.extensions["process_tracker"].sampler.stop()
            mp.undo()


def open_page(browser, server):
    context = browser.new_context()
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto("%s/login?user=admin&next=%s" % (server.url, quote(view_path(), safe="")))
    page.wait_for_selector("body[data-loaded=true]", timeout=60000)
    return context, page, errors


def test_the_footer_names_the_dss_and_client_versions(browser, served):
    server, _, _ = served
    context, page, errors = open_page(browser, server)
    try:
        page.wait_for_function("() => document.getElementById('pt-footer').textContent.includes('dataikuapi ')",
                               timeout=45000)
        assert "DSS 15.2.0" in page.inner_text("#pt-footer")
        assert errors == []
    finally:
        context.close()


def test_a_slow_dss_call_is_said_with_the_age_of_the_listing(browser, served):
    server, sim, state = served
    sim.add_fault(path="/futures/.*", latency=45)
    state.listing.forget()
    context, page, errors = open_page(browser, server)
    try:
        page.wait_for_selector("[data-key=listing-age]", timeout=30000)
        text = page.inner_text("[data-key=listing-age]")
        assert text.startswith("DSS listing from ") and "a call is slow" in text
        assert page.inner_text("#pt-updated").startswith("sample of ")  # the host view is there
        assert errors == []
    finally:
        context.close()
        sim.clear_faults()


def test_a_damaged_history_is_said_on_the_page(browser, served):
    server, _, state = served
    conn = sqlite3.connect(state.store.path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    os.truncate(state.store.path, os.path.getsize(state.store.path) // 2)
    context, page, errors = open_page(browser, server)
    try:
        page.wait_for_selector("[data-key=history-notice]", timeout=30000)
        assert "moved aside" in page.inner_text("[data-key=history-notice]")
        assert errors == []
    finally:
        context.close()
