"""Headless Debian Chromium driven by selenium, without selenium-manager downloads.

with chromium_driver() as driver:
    driver.get(base_url + "/requests/new")
    ...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import ServiceStartError, ServiceUnavailable, make_tempdir, remove_tree

DEFAULT_CHROMIUM = "/usr/bin/chromium"
DEFAULT_CHROMEDRIVER = "/usr/bin/chromedriver"

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--lang=ja",
)


def _executable(path: str, what: str) -> str:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ServiceUnavailable(
            f"browser: {what} not found at {path} (apt-get install chromium chromium-driver)"
        )
    return path


@contextlib.contextmanager
def chromium_driver(
    *,
    binary: str | None = None,
    driver_path: str | None = None,
    window_size: tuple[int, int] = (1280, 900),
    extra_args: tuple[str, ...] | list[str] = (),
    page_load_timeout: float = 30.0,
) -> Iterator[Any]:
    """Yield a ``selenium.webdriver.Chrome`` on headless Chromium; quit + clean up on exit.

    binary       -- browser (env DSRFLOW_CHROMIUM, default /usr/bin/chromium)
    driver_path  -- chromedriver (env DSRFLOW_CHROMEDRIVER, default /usr/bin/chromedriver)
    A fresh ``--user-data-dir`` is made per driver and removed afterwards; the UI language
    is Japanese (``--lang=ja``, Accept-Language ja). Raises ServiceUnavailable when
    chromium, chromedriver or the selenium package is missing.
    """
    binary = _executable(
        binary or os.environ.get("DSRFLOW_CHROMIUM") or DEFAULT_CHROMIUM, "chromium"
    )
    driver_path = _executable(
        driver_path or os.environ.get("DSRFLOW_CHROMEDRIVER") or DEFAULT_CHROMEDRIVER,
        "chromedriver",
    )
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise ServiceUnavailable(f"browser: selenium is not installed ({exc})") from exc

    # Never let selenium-manager phone home (it is not called when both paths are given,
    # this is belt and braces).
    os.environ.setdefault("SE_AVOID_STATS", "true")
    os.environ.setdefault("SE_OFFLINE", "true")

    tmp = make_tempdir("dsrflow-chrome-")
    driver = None
    try:
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in (*CHROMIUM_FLAGS, *extra_args):
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tmp / 'profile'}")
        options.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
        options.add_experimental_option("prefs", {"intl.accept_languages": "ja,en-US,en"})
        service = Service(executable_path=driver_path, log_output=str(tmp / "chromedriver.log"))
        try:
            driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException as exc:
            log = Path(tmp / "chromedriver.log")
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ServiceStartError(f"chromium did not start: {exc.msg}\n{tail}") from exc
        driver.set_page_load_timeout(page_load_timeout)
        yield driver
    finally:
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.quit()
        remove_tree(tmp)
