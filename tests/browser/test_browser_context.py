"""What DSS's own records add to the page (issue 15), in real headless Chromium against the demo: a recipe process
and an ML training that DSS's audit log (CRU) describes show their project and user and "via DSS audit log (CRU)";
the Cgroups tab charts the OOM kills of a DSS cgroup (a real OOM kill in a DSS-style cgroup the demo makes as root)
with its workload and project."""
import os

import pytest
from demo_process import running_demo
from webapp_browser import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def page(tmp_path_factory, browser):
    with running_demo(tmp_path_factory.mktemp("demo"), "--sampling", "2", "--memory-mib", "400") as demo:
        p = Page(browser, demo, "admin")
        yield p, demo
        p.close()


def test_recipes_and_ml_trainings_show_project_user_and_the_audit_log(page):
    p, demo = page
    pids = demo.status["fleet_pids"]
    p.tab("processes")
    p.page.wait_for_selector("#pt-table tbody tr[data-pid='%d']" % pids["ml-1"], timeout=30000)
    rows = {int(r["pid"]): r for r in p.rows() if r["pid"]}
    ml = rows[pids["ml-1"]]  # no activity DSS lists: what DSS's audit log says it is
    assert ml["source"] == "cru" and "via DSS audit log (CRU)" in ml["text"], ml
    assert (ml["project_key"], ml["owner"]) == ("CHURN", "alice"), ml
    assert "ML training" in ml["text"] and "explained" in ml["text"]
    source = p.page.get_attribute("#pt-table tbody tr[data-pid='%d'] td[data-key=source]" % pids["ml-1"], "title")
    assert "DSS's own records say what it is" in source
    # the recipe: its CRU item names the running job, so it is one of the processes of that job's row
    recipe = "#pt-table tbody li[data-pid='%d']" % pids["recipe-1"]
    assert p.page.get_attribute(recipe, "data-source") == "cru"
    assert "via DSS audit log (CRU)" in p.page.text_content(recipe)
    job = p.page.evaluate("sel => document.querySelector(sel).closest('tr').dataset.pid", recipe)
    job_row = rows[int(job)]
    assert (job_row["kind"], job_row["project_key"], job_row["owner"]) == ("job", "CHURN", "alice"), job_row
    p.shot("processes-context.png")
    assert p.errors == []


def test_the_cgroups_tab_charts_oom_kills_per_dss_cgroup(page):
    p, _ = page
    p.tab("cgroups")
    chart = p.page.locator("#pt-chart-oom")
    if os.geteuid() != 0:  # the demo cannot make cgroups: the card says why there is nothing
        assert "No DSS cgroup with a readable OOM-kill counter" in chart.inner_text()
        return
    traces, svgs, points = p.chart("pt-chart-oom")
    assert traces >= 1 and svgs >= 1 and points >= 1
    names = p.page.evaluate("() => document.getElementById('pt-chart-oom').data.map(t => t.name)")
    assert any(n.endswith("pythonRRecipes (CHURN)") for n in names), names
    assert p.page.evaluate("() => Math.max(...document.getElementById('pt-chart-oom').data"
                           ".flatMap(t => t.y.filter(v => v !== null)))") == 1
    p.shot("cgroups-oom.png")
    assert p.errors == []
