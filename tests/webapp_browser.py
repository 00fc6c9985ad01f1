"""A signed-in headless Chromium page on the demo's webapp, for tests/browser/test_*.py (not a test module)."""
import contextlib
import os
from urllib.parse import quote, urlsplit

from demo_process import CHROMIUM, CHROMIUM_ARGS, ROOT

# Screenshots go to tests/artifacts/screenshots (ignored by git) on every run; `make screenshots` sets
# PT_UPDATE_SCREENSHOTS=1 to refresh the README's copies in docs/screenshots instead.
SHOTS = os.path.join(ROOT, "docs", "screenshots") if os.environ.get("PT_UPDATE_SCREENSHOTS") == "1" else \
    os.path.join(ROOT, "tests", "artifacts", "screenshots")
VIEWPORT = {"width": 1440, "height": 960}


def launch(playwright):
    """Debian's chromium, headless, through Playwright (never a browser downloaded by `playwright install`)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextlib.contextmanager
def chromium():
    """A launched headless Chromium (closed on exit), for module-scoped `browser` fixtures."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            yield browser
        finally:
            browser.close()


class Page:
    """A signed-in browser page on the webapp, recording console errors and every request's host."""

    def __init__(self, browser, demo, user):
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.errors = []
        self.hosts = set()
        self.demo_host = urlsplit(demo.status["webapp"]["server"]).netloc
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.hosts.add(urlsplit(r.url).netloc))
        view = urlsplit(demo.status["webapp"]["view_url"])
        target = view.path + "?" + view.query
        self.page.goto("%s/login?user=%s&next=%s" % (demo.status["webapp"]["server"], user, quote(target, safe="")))
        self.page.wait_for_selector("body[data-loaded=true]", timeout=60000)

    def tab(self, name):
        self.page.click("[data-tab=%s]" % name)
        self.page.wait_for_selector("#pt-panel-%s:not([hidden])" % name)

    def chart(self, element_id):
        """(number of traces, number of plotly SVG roots, number of data points) of a rendered chart."""
        self.page.wait_for_selector("#%s[data-rendered=true] .main-svg" % element_id, timeout=30000)
        return self.page.evaluate(
            """id => {
                const el = document.getElementById(id);
                const points = (el.data || []).reduce((n, t) => n + ((t.values || t.y || t.x || []).length), 0);
                return [(el.data || []).length, el.querySelectorAll('.main-svg').length, points];
            }""",
            element_id,
        )

    def rows(self, table="#pt-table"):
        """The table's rows as dicts of data-key -> data-value (raw values), plus the row's text."""
        return self.page.evaluate(
            """sel => Array.from(document.querySelectorAll(sel + ' tbody tr[data-pid]')).map(tr => {
                const row = {text: tr.textContent, id: tr.dataset.id, kind: tr.dataset.kind, pid: tr.dataset.pid,
                             button: !!tr.querySelector('button[data-kind]'),
                             enabled: !!tr.querySelector('button[data-kind]:not([disabled])')};
                tr.querySelectorAll('td[data-key]').forEach(td => { row[td.dataset.key] = td.dataset.value; });
                return row;
            })""",
            table,
        )

    def shot(self, name, full_page=True):
        os.makedirs(SHOTS, exist_ok=True)
        self.page.wait_for_timeout(300)  # let plotly finish its transitions before the picture
        self.page.screenshot(path=os.path.join(SHOTS, name), full_page=full_page)

    def close(self):
        self.context.close()
