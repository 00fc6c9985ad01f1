"""Readable and honest text in the monitoring webapp, in real headless Chromium against the demo: one time
convention (24-hour, UTC shown), sizes with their unit on the treemap, the same legend order in both history
charts, state names in one casing, the DSS instance column keeping the end of the path, a Java chart help that says
when to worry, and a page usable 1024 px wide (the table scrolls inside its card, the page does not)."""
import json
import re

import pytest
from demo_process import running_demo
from webapp_browser import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIZE = re.compile(r"\d+(\.\d)? (B|KiB|MiB|GiB|TiB)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with running_demo(tmp_path_factory.mktemp("demo"), "--sampling", "2", "--memory-mib", "300") as process:
        yield process


@pytest.fixture
def page(browser, demo):
    p = Page(browser, demo, "admin")
    yield p
    p.close()


def _texts(p, selector):
    return p.page.evaluate("s => Array.from(document.querySelectorAll(s)).map(e => e.textContent)", selector)


def test_times_are_24_hour_in_utc_with_the_zone_shown(page):
    p = page
    assert re.fullmatch(r"sample of \d\d:\d\d:\d\d UTC", p.page.inner_text("#pt-updated")), p.page.inner_text("#pt-updated")
    for chart in ("pt-chart-memory-history", "pt-chart-count-history"):
        p.chart(chart)
        axis = p.page.evaluate("id => document.getElementById(id).layout.xaxis", chart)
        assert "UTC" in axis["title"]["text"] and axis["hoverformat"].endswith("%H:%M:%S UTC"), axis
        ticks = _texts(p, "#%s .xtick text" % chart)
        assert ticks and all(re.match(r"\d\d:\d\d", t) for t in ticks), ticks
        assert not any(re.search(r"\b(AM|PM)\b", t) for t in ticks), ticks
    assert p.errors == []


def test_treemap_boxes_show_their_size_with_a_unit(page):
    p = page
    p.chart("pt-chart-treemap")
    # Every role and process box; an instance's box is headed by its path (its total is in its hover), the path
    # bar at the top is blank.
    boxes = [b for b in _texts(p, "#pt-chart-treemap .slicetext") if b.strip() and not b.startswith(("/", "k8s/"))]
    assert len(boxes) >= 3, boxes
    assert all(SIZE.search(b) for b in boxes), boxes
    assert any("MiB" in b or "GiB" in b for b in boxes)


def test_both_history_charts_list_the_roles_in_the_same_order(page):
    p = page
    orders = []
    for chart in ("pt-chart-memory-history", "pt-chart-count-history"):
        p.chart(chart)
        orders.append(_texts(p, "#%s .legend .legendtext" % chart))
    assert len(orders[0]) >= 3 and orders[0] == orders[1], orders


def test_state_names_have_one_casing_in_the_table_the_dialog_and_the_kernels_chart(page):
    p = page
    p.tab("processes")
    states = [s for s in _texts(p, "#pt-table td[data-key=state]") if s]
    assert {"Running", "Idle"} <= set(states), states  # a job's RUNNING and a kernel's idle, written alike
    assert all(re.fullmatch(r"[A-Z][^A-Z]*", s) for s in states), states
    # The dry run's facts say the same.
    p.page.click("#pt-table tbody tr[data-kind=job] button[data-kind]")
    p.page.wait_for_selector("#pt-dialog[data-phase]:not([data-phase=preview])")
    assert re.search(r"State\s*Running", p.page.inner_text("#pt-dialog")), p.page.inner_text("#pt-dialog")
    p.page.click("#pt-dialog-cancel")
    p.tab("kernels")
    p.chart("pt-chart-kernels")
    hovers = p.page.evaluate("() => document.getElementById('pt-chart-kernels').data[0].customdata")
    listed = [h.rsplit(", ", 1)[-1] for h in hovers]
    assert listed and all(s in ("Idle", "Busy", "Starting") for s in listed), hovers
    assert p.errors == []


def test_the_instance_column_keeps_the_end_of_the_path(browser, demo):
    """Two DSS instances on the host: the column appears; a long data directory keeps its end, cut at the start."""
    long_path = "/srv/dataiku/instances/a_rather_long_directory_of_instances/dss_data_design_node_primary"

    def two_instances(route):
        table = json.loads(route.fetch().text())
        for i, row in enumerate(table["rows"]):
            row["instance"] = long_path if i % 2 == 0 else "/data/dataiku/dss_data/automation"
        route.fulfill(status=200, content_type="application/json", body=json.dumps(table))

    p = Page(browser, demo, "admin")
    try:
        p.page.route(re.compile(r".*/api/table$"), two_instances)
        p.tab("processes")
        p.page.click("#pt-refresh")
        p.page.wait_for_selector("#pt-table td[data-key=instance][title='%s']" % long_path)
        cells = p.page.evaluate("""() => Array.from(document.querySelectorAll('#pt-table td[data-key=instance]'))
            .map(td => [td.textContent, td.title, td.scrollWidth <= td.clientWidth])""")
        shown = {text: (title, fits) for text, title, fits in cells if title}  # rows of this host have one
        assert set(shown) == {"\u2026/dss_data/automation", "\u2026/dss_data_design_node_primary"}, shown
        for text, (title, fits) in shown.items():
            assert title.endswith(text[1:]), (text, title)  # the END of the path, the whole path in the tooltip
            assert fits, text  # nothing cut at the end
        assert p.errors == []
    finally:
        p.close()


def test_the_java_help_says_what_the_chart_shows_and_when_to_worry(page):
    help_text = " ".join(page.page.inner_text("#pt-java-help").split())
    assert "RSS below -Xmx is normal" in help_text
    assert "Worry when RSS is near or above -Xmx" in help_text
    assert "normally well above" not in help_text


def test_the_page_is_usable_1024_px_wide(page):
    """No horizontal page scroll at 1024 px on any tab: the wide table scrolls inside its card."""
    p = page
    p.page.set_viewport_size({"width": 1024, "height": 768})
    for tab in ("overview", "processes", "kernels", "orphans", "cgroups"):
        p.tab(tab)
        p.page.wait_for_timeout(200)  # plotly resizes its charts to the new width
        width = p.page.evaluate("() => document.scrollingElement.scrollWidth")
        assert width <= 1024, (tab, width)
    p.tab("processes")
    wrap = p.page.evaluate("""() => { const w = document.querySelector('#pt-panel-processes .pt-table-wrap');
        return [getComputedStyle(w).overflowX, w.clientWidth <= 1024]; }""")
    assert wrap == ["auto", True]
    p.shot("processes-1024.png", full_page=False)
    assert p.errors == []


def _kernels_mib(p, dip_home):
    """This demo instance's Jupyter kernels box in the treemap, as drawn: its MiB (None until drawn)."""
    return p.page.evaluate(
        """home => { const t = (document.getElementById('pt-chart-treemap').data || [])[0];
            if (!t) return null;
            const i = t.ids.findIndex(id => id.endsWith('/r:jupyter_kernel') && id.includes(home));
            return i < 0 ? null : t.values[i]; }""",
        dip_home,
    )


def test_unloading_a_kernel_from_the_page_ends_it_and_its_memory_goes_down(page, demo):
    """The honest demo: an unload confirmed in the page ends the kernel process (as DSS does), so the instance's
    kernel memory goes down in the treemap and the kernel never shows up again, not even as an orphan."""
    import time

    import psutil

    p = page
    home = demo.status["dip_home"].rsplit("/", 1)[-1]
    pid = demo.status["fleet_pids"]["kernel-3"]
    p.chart("pt-chart-treemap")
    before = _kernels_mib(p, home)
    assert before and before > 0
    p.tab("processes")
    p.page.click('#pt-table tr[data-pid="%d"] button[data-kind]' % pid)
    p.page.wait_for_selector("#pt-dialog-confirm:not([hidden])")
    p.page.click("#pt-dialog-confirm")
    p.page.wait_for_selector("#pt-dialog[data-phase=done]", timeout=60000)
    p.page.click("#pt-dialog-cancel")
    deadline = time.monotonic() + 60
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(pid), "the unloaded kernel's process must end"
    gone_at = time.time()
    p.tab("overview")
    after = None
    while time.monotonic() < deadline:
        p.page.click("#pt-refresh")
        p.page.wait_for_selector("#pt-refresh:not([disabled])")
        taken = p.page.evaluate("() => document.getElementById('pt-updated').textContent")
        after = _kernels_mib(p, home)
        if after is not None and after < before and taken and _sample_after(taken, gone_at):
            break
        time.sleep(1)
    assert after is not None and after < before, (before, after)
    assert str(pid) not in [r["pid"] for r in p.rows()] + [r["pid"] for r in p.rows("#pt-orphans")]
    assert p.errors == []


def _sample_after(text, epoch):
    """Whether the page's "sample of HH:MM:SS UTC" is at or after `epoch` (within 12 h, across midnight too)."""
    hms = re.search(r"(\d\d):(\d\d):(\d\d) UTC", text)
    if not hms:
        return False
    h, m, s = (int(x) for x in hms.groups())
    return (h * 3600 + m * 60 + s - int(epoch) % 86400) % 86400 < 43200
