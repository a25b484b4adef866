"""Load a report in headless Chromium: console errors, broken images, sections, load time, screenshots.

Used by ``rlbasins report/compare --screenshots DIR`` and by the browser test. Needs the
``selenium`` package and the Debian packages ``chromium`` and ``chromium-driver`` (nothing is
downloaded at run time: the browser and driver found on PATH are used).
"""

from __future__ import annotations

import base64
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = "install them with `apt-get install chromium chromium-driver` (as root)"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Each <img> in document order: its alt text (or the start of its src) and whether it decoded.
IMAGES_JS = """
return Array.from(document.images).map(img => ({
  name: img.alt || (img.getAttribute('src') || '').slice(0, 60),
  loaded: img.complete && img.naturalWidth > 0,
}));
"""
# An element's border box in page coordinates, for screenshots of the whole element.
BOX_JS = """
const r = arguments[0].getBoundingClientRect();
return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height};
"""
# loadEventEnd stays 0 until the load event's handlers have finished.
LOAD_MS_JS = """
const nav = performance.getEntriesByType('navigation')[0];
return nav && nav.loadEventEnd > 0 ? nav.loadEventEnd - nav.startTime : null;
"""


class BrowserUnavailable(RuntimeError):
    """Chromium, chromedriver or selenium is missing; the message says how to install it."""


@dataclass
class PageCheck:
    """What a real browser made of one HTML file."""

    path: Path
    size_bytes: int
    load_ms: float
    console_errors: list[str]
    images: int
    broken_images: list[str]
    section_ids: list[str]
    screenshots: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No console error and every image decoded."""
        return not self.console_errors and not self.broken_images


def find_chromium() -> tuple[str, str]:
    """Paths of the Chromium binary and of chromedriver, or BrowserUnavailable naming what is missing."""
    browser = next((path for name in BROWSER_NAMES if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if path is None]
    if missing:
        raise BrowserUnavailable(f"{' and '.join(missing)} not found on PATH; {INSTALL_HINT}")
    return browser, driver


def _start_driver(width: int, height: int):
    """A headless Chromium session that keeps the browser console log."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise BrowserUnavailable("the selenium package is missing; install it with `pip install selenium` "
                                 "(or `pip install -e '.[dev]'`)") from None
    browser, driver = find_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # --no-sandbox: Chromium refuses to run as root otherwise; /dev/shm is tiny in containers.
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--hide-scrollbars", "--force-device-scale-factor=1", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path keeps Selenium Manager from trying to download one.
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def _png(driver, box: dict) -> bytes:
    """A box of the page (CSS pixels, page coordinates) as PNG, also where it reaches beyond the viewport.

    Through the DevTools protocol because Selenium's element screenshots are cut at the viewport.
    """
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"], "scale": 1}})
    return base64.b64decode(shot["data"])


def open_in_browser(html_path: Path | str, screenshot_dir: Path | str | None = None, width: int = 1280,
                    height: int = 1000, timeout: float = 60.0) -> PageCheck:
    """Load a local HTML file in headless Chromium, wait for its load event, and check it.

    With ``screenshot_dir``, writes ``<stem>.png`` (the whole page) and ``<stem>_<section id>.png``
    (one per ``<section>``) there.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    path = Path(html_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    driver = _start_driver(width, height)
    try:
        driver.set_page_load_timeout(timeout)
        driver.get(path.as_uri())
        load_ms = WebDriverWait(driver, timeout).until(lambda d: d.execute_script(LOAD_MS_JS))
        images = driver.execute_script(IMAGES_JS)
        sections = driver.find_elements(By.TAG_NAME, "section")
        section_ids = [s.get_attribute("id") or f"section{i}" for i, s in enumerate(sections)]
        screenshots = []
        if screenshot_dir is not None:
            folder = Path(screenshot_dir)
            folder.mkdir(parents=True, exist_ok=True)
            page = folder / f"{path.stem}.png"
            size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            page.write_bytes(_png(driver, {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}))
            screenshots.append(page)
            for section, section_id in zip(sections, section_ids, strict=True):
                shot = folder / f"{path.stem}_{re.sub(r'[^A-Za-z0-9_-]', '_', section_id)}.png"
                shot.write_bytes(_png(driver, driver.execute_script(BOX_JS, section)))
                screenshots.append(shot)
        # Read last, so that errors raised while scrolling for the screenshots are counted too.
        errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()
    return PageCheck(path=path, size_bytes=path.stat().st_size, load_ms=float(load_ms), console_errors=errors,
                     images=len(images), broken_images=[img["name"] for img in images if not img["loaded"]],
                     section_ids=section_ids, screenshots=screenshots)
