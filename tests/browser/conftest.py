"""The fixture every browser test module shares (the simulator's and the fleet's are in tests/conftest.py)."""
import pytest
from webapp_browser import Page, chromium


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through Playwright, launched once per test module and closed after it."""
    with chromium() as b:
        yield b


@pytest.fixture
def open_page(browser, demo):
    """Factory: `open_page(user="admin")` -> a webapp_browser.Page logged in as `user` on the module's `demo`
    (each module starts its own demo); every page is closed at teardown."""
    pages = []

    def make(user="admin"):
        page = Page(browser, demo, user)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()
