"""The requester's journey in headless Chromium at phone (390 px) and desktop (1280 px) widths.

Screenshots go to DSRFLOW_SCREENSHOT_DIR when it is set (``make screenshots`` writes the ones
in docs/pages/), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlmodel import Session, col, select

from dsrflow.app import create_app
from dsrflow.documents.models import RequesterDocument
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests.models import Request
from dsrflow.runtime import Runtime
from dsrflow.web.server import uvicorn_config
from tests.services import free_port, require
from tests.services.browser import chromium_driver

WIDTHS = {"phone": (390, 844), "desktop": (1280, 900)}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def live_url(rt: Runtime) -> Iterator[str]:
    port = free_port()
    rt.settings.base_url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn_config(
            create_app(rt),
            rt.settings,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            log_config=None,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield rt.settings.base_url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with require(chromium_driver) as driver:
        driver.implicitly_wait(10)
        yield driver


class Camera:
    def __init__(self, driver: WebDriver, width: str, directory: Path):
        self.driver, self.width, self.directory = driver, width, directory
        self.size = WIDTHS[width]
        self.driver.delete_all_cookies()
        self._metrics(self.size[1])

    def _metrics(self, height: int) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": self.size[0],
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": self.width == "phone",
            },
        )

    def no_sideways_scroll(self) -> None:
        scroll, inner = self.driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert scroll <= inner, f"the page scrolls sideways: {scroll} > {inner}"

    def shoot(self, name: str) -> None:
        """A full-page screenshot, after checking the page fits the width."""
        self.no_sideways_scroll()
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self._metrics(min(int(height), 4000))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(self.directory / f"{name}-{self.width}.png"))
        self._metrics(self.size[1])


def _verify_link(rt: Runtime, reference: str) -> str:
    with Session(rt.db) as session:
        body = session.exec(
            select(OutboxMessage.body).where(
                OutboxMessage.reference == reference, OutboxMessage.letter == "verification"
            )
        ).one()
    match = re.search(r"(/verify/\S+)", body)
    assert match
    return match.group(1)


def _wait_text(browser: WebDriver, element_id: str, text: str) -> None:
    """Wait for the next page: the old one may still be there just after a click."""
    WebDriverWait(browser, 10).until(
        lambda b: text in b.find_element(By.ID, element_id).text,
        f"#{element_id} never said {text!r}",
    )


def _fill(browser: WebDriver, **fields: str) -> None:
    for field, value in fields.items():
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)


@pytest.mark.browser
@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_requesters_journey(
    rt: Runtime, live_url: str, browser: WebDriver, width: str, tmp_path: Path
) -> None:
    directory = Path(os.environ.get("DSRFLOW_SCREENSHOT_DIR") or tmp_path)
    camera = Camera(browser, width, directory)
    browser.get(live_url + "/")
    assert browser.find_element(By.CSS_SELECTOR, ".brand img").get_attribute("alt")
    camera.shoot("01-form")

    # Errors: next to their fields, in the title, with the focus on the first.
    Select(browser.find_element(By.ID, "type")).select_by_value("disclosure")
    browser.find_element(By.CSS_SELECTOR, "input[name=disclosure_method][value=paper]").click()
    Select(browser.find_element(By.ID, "type")).select_by_value("correction")
    assert not browser.find_element(By.ID, "disclosure-method").is_displayed()
    _fill(browser, name="山田 太郎", email="ｔａｒｏ＠ｅｘａｍｐｌｅ")
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 10).until(lambda b: b.title.startswith("入力内容にエラーがあります"))
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "email"
    assert browser.find_element(By.ID, "details").get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.ID, "name").get_attribute("aria-invalid") is None
    assert browser.find_element(By.ID, "error-email").is_displayed()
    camera.shoot("02-errors")

    # Fixed (full-width input is fine), sent: a receipt that survives a reload.
    _fill(browser, email="ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ")
    _fill(
        browser,
        details="会員サービス「InnovativeAI Notes」に登録したメールアドレスの訂正をお願いします。",
    )
    browser.find_element(By.ID, "submit").click()
    reference = browser.find_element(By.ID, "reference").text
    assert re.fullmatch(r"DSR-\d{4}-\d{6}", reference)
    _wait_text(browser, "heading", "ご請求を受け付けました")
    status_url = browser.current_url.split("?")[0]
    camera.shoot("03-receipt")
    browser.refresh()
    assert browser.find_element(By.ID, "reference").text == reference

    # The same request sent again is not filed twice.
    browser.get(live_url + "/")
    Select(browser.find_element(By.ID, "type")).select_by_value("correction")
    _fill(
        browser,
        name="山田 太郎",
        email="taro@example.jp",
        details="会員サービス「InnovativeAI Notes」に登録したメールアドレスの訂正をお願いします。",
    )
    browser.find_element(By.ID, "submit").click()
    assert browser.find_element(By.ID, "duplicate").is_displayed()
    assert browser.find_element(By.ID, "reference").text == reference
    camera.shoot("04-duplicate")
    with Session(rt.db) as session:
        assert len(session.exec(select(Request)).all()) == 1

    # The e-mailed link: opening it changes nothing, the button confirms.
    browser.get(live_url + _verify_link(rt, reference))
    assert browser.find_element(By.ID, "confirm").is_displayed()
    camera.shoot("05-verify")
    with Session(rt.db) as session:
        assert session.exec(select(Request)).one().email_verified_at is None
    browser.find_element(By.ID, "confirm").click()
    _wait_text(browser, "heading", "メールアドレスを確認しました")
    camera.shoot("06-verified")

    # The status page: what comes next, a safe upload, newest letter first, no sideways scroll.
    browser.get(status_url)
    assert "本人確認書類" in browser.find_element(By.ID, "next-step").text
    assert browser.find_element(By.ID, "my-number-warning").is_displayed()
    document = tmp_path / "運転免許証.png"
    document.write_bytes(PNG)
    browser.find_element(By.ID, "file").send_keys(str(document))
    browser.find_element(By.ID, "upload").click()
    assert "書類を受け付けました" in browser.find_element(By.ID, "notice").text
    assert "運転免許証.png" in browser.find_element(By.ID, "document-list").text
    camera.shoot("07-status")
    with Session(rt.db) as session:
        assert session.exec(select(col(RequesterDocument.size))).one() == len(PNG)

    # Withdrawal asks first.
    browser.find_element(By.ID, "withdraw").click()
    alert = WebDriverWait(browser, 5).until(lambda b: b.switch_to.alert)
    alert.accept()
    _wait_text(browser, "state", "取下げ")
    letters = browser.find_elements(By.CSS_SELECTOR, "article.letter h4")
    assert "取下げ" in letters[0].text  # newest first
    camera.shoot("08-withdrawn")


@pytest.mark.browser
def test_english_pages_and_the_too_large_page(
    rt: Runtime, live_url: str, browser: WebDriver, tmp_path: Path
) -> None:
    directory = Path(os.environ.get("DSRFLOW_SCREENSHOT_DIR") or tmp_path)
    camera = Camera(browser, "desktop", directory)
    browser.get(live_url + "/?lang=en")
    assert browser.find_element(By.TAG_NAME, "h2").text == "Request form"
    camera.shoot("10-form-en")
    # 20,000 characters (the field's limit) go through; far more gets a page, not JSON.
    _fill(browser, name="Taro Yamada", email="taro@example.jp")
    browser.execute_script("document.getElementById('details').value = 'あ'.repeat(20000)")
    browser.find_element(By.ID, "submit").click()
    _wait_text(browser, "heading", "We have received your request")
    phone = Camera(browser, "phone", directory)
    phone.shoot("11-receipt-en")
    browser.get(live_url + "/?lang=en")
    _fill(browser, name="Taro Yamada", email="taro@example.jp")
    browser.execute_script(
        "const d = document.getElementById('details');"
        "d.removeAttribute('maxlength'); d.value = 'あ'.repeat(60000)"
    )
    browser.find_element(By.ID, "submit").click()
    _wait_text(browser, "heading", "Too much to send")
    phone.shoot("12-too-large-en")
