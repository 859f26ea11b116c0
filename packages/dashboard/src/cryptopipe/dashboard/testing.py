"""Browser fixtures and page readers for the dashboard's end-to-end tests (a pytest plugin).

Debian's chromium driven by Playwright (``playwright install`` downloads nothing on machines
without internet, so the system browser is used). Without it the tests skip with the reason,
except under ``CI`` (which installs it): there they fail.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from cryptopipe.infra import LocalServer
from cryptopipe.runtime import free_port
from cryptopipe.schemas import RedisSettings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots go to ``artifacts/`` at the repository root (git-ignored).
ARTIFACTS = Path(__file__).resolve().parents[5] / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium for the module's tests."""
    if not CHROMIUM.exists():
        reason = "no /usr/bin/chromium: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


def card_value(page: Any, symbol: str) -> str | None:
    """The price shown on ``symbol``'s card (None while the card is not drawn)."""
    label = page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(rf"^{symbol}( · STALE)?$"))
    card = page.get_by_test_id("stMetric").filter(has=label)
    if card.count() != 1:
        return None
    return str(card.get_by_test_id("stMetricValue").inner_text()).strip()


def metric_value(page: Any, label: str) -> str | None:
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").filter(has_text=label)
    )
    if card.count() != 1:
        return None
    return str(card.get_by_test_id("stMetricValue").inner_text()).strip()


def feed_text(page: Any) -> str:
    """The alert feed's cells (the grid draws on a canvas; its accessible copy carries the text)."""
    grid = page.get_by_test_id("stDataFrame")
    return str(grid.text_content()) if grid.count() == 1 else ""


#: Every element of a tile (label, value) whose content is wider than its box, i.e. cut off or
#: ellipsised: the tile's text for each.
_CLIPPED_JS = """
(selector) => Array.from(document.querySelectorAll(selector)).flatMap(tile =>
  [tile, ...tile.querySelectorAll('*')]
    .filter(el => el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
    .map(() => tile.innerText.replace(/\\n/g, ' | ')))
"""


def clipped(page: Any, selector: str = "[data-testid=stMetric]") -> list[str]:
    """The tiles (``selector``) whose text does not fit: scrollWidth beyond clientWidth anywhere inside."""
    return sorted(set(page.evaluate(_CLIPPED_JS, selector)))


def width_share(page: Any, symbol: str) -> float:
    """The share of the page's content width that ``symbol``'s price card takes."""
    label = page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(rf"^{symbol}( · STALE)?$"))
    column = page.locator("[data-testid=stColumn]").filter(has=label).last
    main = page.get_by_test_id("stMainBlockContainer")
    return float(column.bounding_box()["width"]) / float(main.bounding_box()["width"])


def body_text(page: Any) -> str:
    return str(page.inner_text("body"))


def screenshot(page: Any, name: str) -> Path:
    """The whole page (Streamlit scrolls inside its own container, so grow the window to fit)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    height = page.evaluate("document.querySelector('[data-testid=stMain] > div')?.scrollHeight ?? 1000")
    page.set_viewport_size({"width": 1400, "height": max(1000, int(height) + 120)})
    page.wait_for_timeout(500)  # the charts redraw at the new size
    page.screenshot(path=str(path), full_page=True)
    return path


def start_dashboard(stack: ExitStack, env: dict[str, str]) -> tuple[str, LocalServer]:
    """``python -m cryptopipe.dashboard`` on a free loopback port; its URL once healthy, and the process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def healthy(_server: LocalServer) -> bool:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
            return bool(response.read() == b"ok")

    server = LocalServer(
        "dashboard",
        [sys.executable, "-m", "cryptopipe.dashboard", "--port", str(port)],
        ready=healthy,
        ready_timeout=60,
        env={**os.environ, **env},
    )
    stack.enter_context(server)
    return url, server


def page_env(redis: RedisSettings, symbols: Sequence[str], metrics_url: str) -> dict[str, str]:
    """The dashboard's settings for a test: its Redis, its symbols, quick refreshes, one /metrics."""
    return {
        "REDIS_URL": redis.url.get_secret_value(),
        "REDIS_KEY_PREFIX": redis.key_prefix,
        "DASHBOARD_SYMBOLS": ",".join(symbols),
        "DASHBOARD_REFRESH_SECONDS": "0.5",
        "DASHBOARD_METRICS_URLS": metrics_url,
        "PROMETHEUS_URL": "",
    }
