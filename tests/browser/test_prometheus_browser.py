"""The webapp on Prometheus in headless Chromium: the node selector lists both nodes and redraws the history per
node. The stack (two DSS-shaped nodes, their exporters and a real Prometheus) is tests/integration/
test_prometheus.py's `stack` fixture (module-scoped: this module starts its own)."""
import pytest
from demo_process import running_demo
from test_exporter import fleet_truth
from test_prometheus import PROMETHEUS, prometheus_stack  # noqa: F401 - `prometheus_stack` is the `stack` fixture
from webapp_browser import Page, chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus missing: `make test` installs Debian's prometheus")]


def test_the_page_shows_a_node_selector_and_redraws_the_history_per_node(stack, tmp_path):
    with running_demo(tmp_path, "--no-fleet", "--sampling", "2", "--prometheus-url", stack.url) as demo, \
            chromium() as browser:
        p = Page(browser, demo, "admin")
        try:
            p.page.wait_for_selector("#pt-node-wrap:not([hidden])", timeout=30000)
            options = p.page.eval_on_selector_all("#pt-node option", "os => os.map(o => o.value)")
            assert options == [""] + sorted([stack.node_a, stack.node_b])
            p.page.click("[data-window='1h']")
            p.page.select_option("#pt-node", stack.node_b)
            p.page.wait_for_function("n => document.getElementById('pt-history-points').textContent.includes(n)",
                                     arg=stack.node_b)
            traces, svgs, points = p.chart("pt-chart-count-history")
            assert traces == len(fleet_truth(stack.fleet_b)) and svgs >= 1 and points >= traces
            p.page.select_option("#pt-node", "")
            p.page.wait_for_function(
                "() => document.getElementById('pt-history-points').textContent.includes('all nodes')")
            assert p.chart("pt-chart-count-history")[0] > traces
            assert p.errors == []
        finally:
            p.close()
