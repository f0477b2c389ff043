"""Open a page in real headless Chromium (Selenium + Debian's chromium-driver).

Used by the report test; also runnable by hand to look at a report:
``python tests/plots/browser.py report.html shot.png``.
"""

from __future__ import annotations

import base64
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]

# Count the plotly graph divs (in the page from the start: plotly marks a div js-plotly-plot
# only once it starts drawing, so counting those could read 0 of 0 on a busy machine) and
# those whose SVG plot layer exists (i.e. rendered).
_COUNT_JS = """
const plots = Array.from(document.querySelectorAll('.plotly-graph-div, .js-plotly-plot'));
return [plots.length, plots.filter(p => p.querySelector('svg.main-svg') !== null
                                        && p._fullLayout !== undefined).length];
"""


@dataclass
class PageResult:
    """What a page did in the browser."""

    plots: int
    rendered: int
    console: list[dict] = field(default_factory=list)
    height: int = 0
    script_result: object = None
    state: str = ""  # document.readyState and the URL when counting stopped (for a failure's message)

    @property
    def errors(self) -> list[dict]:
        """Console entries at level SEVERE (errors, uncaught exceptions, failed loads)."""
        return [e for e in self.console if e.get("level") == "SEVERE"]


def open_page(
    page: Path,
    *,
    chromium: str,
    chromedriver: str,
    screenshot: Path | None = None,
    width: int = 1280,
    clip_height: int | None = None,
    timeout: float = 60.0,
    script: str | None = None,
    script_args: tuple = (),
    expect_plots: int | None = None,
) -> PageResult:
    """Load a local HTML file, wait for every plotly figure, collect console and screenshot.

    Args:
        page: The HTML file.
        chromium: Chromium executable.
        chromedriver: The matching chromedriver.
        screenshot: Where to save a PNG of the whole page (or of ``clip_height`` px).
        width: Viewport width in px.
        clip_height: Only screenshot the top this many px (None: the whole page).
        timeout: Seconds to wait for the figures to render.
        script: Asynchronous JavaScript run after rendering (it calls
            ``arguments[arguments.length - 1]`` with its result).
        script_args: Arguments for ``script``.
        expect_plots: How many figures the page holds: counting waits (up to ``timeout``) until
            the document has that many graph divs, all drawn (None: at least one). On a loaded
            machine the first count can come before the document has any (CI once read 0 of 9).

    Returns:
        Counts of plot divs and rendered plots, console entries, page height.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="repeatlens-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}", f"--window-size={width},900"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        driver.set_page_load_timeout(timeout)
        driver.get(page.resolve().as_uri())
        deadline = time.monotonic() + timeout
        want = max(1, expect_plots or 0)
        plots, rendered = driver.execute_script(_COUNT_JS)
        while (plots < want or rendered < plots) and time.monotonic() < deadline:
            time.sleep(0.2)
            plots, rendered = driver.execute_script(_COUNT_JS)
        state = f"readyState {driver.execute_script('return document.readyState')} at {driver.current_url}"
        script_result = None
        if script is not None:
            driver.set_script_timeout(timeout)
            script_result = driver.execute_async_script(script, *script_args)
        time.sleep(0.3)  # let late errors reach the console
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        console = driver.get_log("browser")
        if screenshot is not None:
            shot_height = min(height, clip_height or height)
            data = driver.execute_cdp_cmd(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True,
                 "clip": {"x": 0, "y": 0, "width": width, "height": shot_height, "scale": 1}},
            )
            screenshot.write_bytes(base64.b64decode(data["data"]))
        return PageResult(plots=plots, rendered=rendered, console=console, height=height,
                          script_result=script_result, state=state)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    result = open_page(
        Path(sys.argv[1]),
        chromium=shutil.which("chromium") or "/usr/bin/chromium",
        chromedriver=shutil.which("chromedriver") or "/usr/bin/chromedriver",
        screenshot=Path(sys.argv[2]) if len(sys.argv) > 2 else None,
    )
    print(result.plots, result.rendered, result.height, result.errors or "no console errors")
