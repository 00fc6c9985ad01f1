"""HTML planted in every name DSS gives (a notebook, a project key, a user login, a job id) renders as text in real
headless Chromium: nothing runs, no element is created from it, and the names show as typed. The webapp is served
the way DSS serves it (dev/webapp_server.py) in this process, against a simulated DSS holding those names; the
logged-in user's own login is hostile too (the identity banner). Same Chromium launch settings as test_browser.py.
"""
from urllib.parse import quote

import pytest

from dev.dss_runtime import load_webapp_app
from dev.dss_simulator.builders import instance, job, notebook, project, session, user
from dev.webapp_server import WEBAPP_DIR, WebappServer, build_app, view_path

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# A notebook name holds no "/" (identifiers), a project key no HTML at all: the hostile project key is listed by DSS
# and shown as an error row (in the listing banner); the hostile notebook, user and job live in project HOSTILE.
NOTEBOOK = '<img src=x onerror=window.__ptInjected="notebook"><b>nb'
PROJECT = '<img src=x onerror=window.__ptInjected="project">'
USER = "<svg onload=window.__ptInjected=3>"  # no quote: the simulated session cookie cannot carry one
JOB = '<iframe srcdoc="<script>parent.__ptInjected=1</script>">'
PAYLOADS = (NOTEBOOK, PROJECT, USER)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from dev.dss_simulator import Simulator

    inst = instance(
        projects=[project("HOSTILE", owner="admin", notebooks=[notebook(NOTEBOOK, [
            session(USER, session_id="s-hostile", started_ago="3d", idle_for="2d")])],
            jobs=[job("j-hostile", USER, started_ago="30h", name=JOB)]),
            project(PROJECT, owner="admin")],
        users=[user("admin", ["administrators"], "Admin"), user(USER, ["data_scientists"], USER)],
        abortDelay=0,
    )
    sim = Simulator(inst)
    mp = pytest.MonkeyPatch()
    with sim.serve() as url:
        mp.setenv("DKU_DSS_URL", url)
        mp.setenv("DKU_API_KEY", sim.admin_key)
        mp.delenv("DIP_HOME", raising=False)
        config = {"historyDir": str(tmp_path_factory.mktemp("h")), "samplingIntervalSeconds": 3600}
        backend = load_webapp_app(WEBAPP_DIR, config)
        try:
            with WebappServer(build_app(backend, config, users=("admin", USER)), port=0) as server:
                yield server, sim
        finally:
            backend.extensions["process_tracker"].sampler.stop()
            mp.undo()


def open_as(browser, server, login):
    context = browser.new_context()
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto("%s/login?user=%s&next=%s" % (server.url, quote(login, safe=""), quote(view_path(), safe="")))
    page.wait_for_selector("body[data-loaded=true]", timeout=60000)
    return context, page, errors


def injected_nodes(page):
    """Elements or handlers that only the planted HTML could have created."""
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        '#pt-app script, #pt-app img, #pt-app iframe, #pt-app b, [onload], [onerror], [srcdoc]')).length""")


def test_hostile_names_render_as_text_in_the_table_and_the_dialog(browser, served):
    server, sim = served
    context, page, errors = open_as(browser, server, "admin")
    try:
        page.click("[data-tab=processes]")
        page.wait_for_selector("#pt-panel-processes:not([hidden])")
        page.wait_for_selector('#pt-table tr[data-id="s-hostile"]')
        text = page.inner_text("#pt-table")
        for payload in (NOTEBOOK, USER, JOB):
            assert payload in text, payload
        assert PROJECT in page.inner_text("#pt-banners")  # the listing error naming the bad key, as text
        page.click('#pt-table tr[data-id="s-hostile"] button')
        page.wait_for_selector("#pt-dialog[data-phase=confirm]")
        dialog = page.inner_text("#pt-dialog")
        assert NOTEBOOK in dialog and "HOSTILE" in dialog
        page.click("#pt-dialog-cancel")
        assert injected_nodes(page) == 0
        assert page.evaluate("() => window.__ptInjected") is None
        assert [e for e in errors if "status of 400" not in e] == []  # Chromium logs the refused preview's 400
        assert "s-hostile" in sim.session_ids()  # the dry run changed nothing
    finally:
        context.close()


def test_a_hostile_login_renders_as_text_in_the_identity_banner(browser, served):
    server, _ = served
    context, page, errors = open_as(browser, server, USER)
    try:
        assert page.inner_text("#pt-identity").startswith(USER)
        assert injected_nodes(page) == 0 and page.evaluate("() => window.__ptInjected") is None
        assert errors == []
    finally:
        context.close()
