"""The fixture every browser test module shares (the simulator's and the fleet's are in tests/conftest.py)."""
import pytest
from webapp_browser import chromium


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through Playwright, launched once per test module and closed after it."""
    with chromium() as b:
        yield b
