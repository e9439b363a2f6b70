"""A person fills in the Japanese form in headless Chromium and sees their reference."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from dsrflow.app import create_app
from dsrflow.runtime import Runtime
from dsrflow.web.server import uvicorn_config
from tests.services import free_port, require
from tests.services.browser import chromium_driver

pytestmark = pytest.mark.browser


@pytest.fixture
def live_url(rt: Runtime) -> Iterator[str]:
    port = free_port()
    rt.settings.base_url = f"http://127.0.0.1:{port}"  # so that the pages' Origin check passes
    app = create_app(rt)
    server = uvicorn.Server(
        uvicorn_config(
            app, rt.settings, host="127.0.0.1", port=port, log_level="warning", log_config=None
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with require(chromium_driver) as driver:
        # After a click the next page loads asynchronously: wait for what a test looks for.
        driver.implicitly_wait(10)
        yield driver


def test_japanese_form_in_chromium(live_url: str, browser: WebDriver) -> None:
    browser.get(live_url + "/")
    assert browser.find_element(By.TAG_NAME, "h2").text == "ご請求フォーム"
    Select(browser.find_element(By.ID, "type")).select_by_visible_text("保有個人データの開示請求")
    browser.find_element(By.ID, "name").send_keys("山田 太郎")
    browser.find_element(By.ID, "email").send_keys("taro@example.jp")
    browser.find_element(By.ID, "details").send_keys(
        "会員サービスに登録した個人データの開示を求めます。"
    )
    browser.find_element(By.CSS_SELECTOR, "input[name=disclosure_method][value=electronic]").click()
    browser.find_element(By.ID, "submit").click()
    reference = browser.find_element(By.ID, "reference").text
    assert re.fullmatch(r"DSR-\d{4}-\d{6}", reference)
    assert "ご請求を受け付けました" in browser.find_element(By.TAG_NAME, "h2").text
    # The receipt is the status page behind the secret link: a reload files nothing twice.
    assert "/status/" in browser.current_url
    browser.refresh()
    assert browser.find_element(By.ID, "reference").text == reference
    assert browser.find_element(By.ID, "state").text == "受付済み"


def test_a_method_chosen_then_another_type_is_no_dead_end(
    live_url: str, browser: WebDriver
) -> None:
    # Regression: choosing a disclosure method, then a type without one, gave an error that
    # could not be cleared (a radio cannot be unchecked).
    browser.get(live_url + "/?lang=en")
    browser.find_element(By.ID, "name").send_keys("Taro Yamada")
    browser.find_element(By.ID, "email").send_keys("taro@example.jp")
    browser.find_element(By.ID, "details").send_keys("Please stop using my data.")
    Select(browser.find_element(By.ID, "type")).select_by_value("disclosure")
    browser.find_element(By.CSS_SELECTOR, "input[name=disclosure_method][value=paper]").click()
    Select(browser.find_element(By.ID, "type")).select_by_value("suspension")
    assert not browser.find_element(By.ID, "disclosure-method").is_displayed()
    browser.find_element(By.ID, "submit").click()
    assert "We have received your request" in browser.find_element(By.ID, "heading").text
