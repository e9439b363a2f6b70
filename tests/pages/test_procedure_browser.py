"""A person reads the published procedure in headless Chromium, in Japanese and in English."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from dsrflow.app import create_app
from dsrflow.config import Settings
from dsrflow.runtime import Runtime
from tests.conftest import WORKFLOWS
from tests.services import free_port, require
from tests.services.browser import chromium_driver


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # The procedure and the form read no database: one server for the module.
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=Path(tmp_path_factory.mktemp("procedure")) / "var",
        workflows_dir=WORKFLOWS,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Runtime.load(settings)),
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
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with require(chromium_driver) as driver:
        driver.implicitly_wait(10)
        yield driver


def test_the_form_leads_to_the_japanese_procedure(live_url: str, browser: WebDriver) -> None:
    browser.get(live_url + "/")
    notice = browser.find_element(By.ID, "form-procedure")
    assert "保有個人データの開示請求：1,000円（税込）" in notice.text
    assert "運転免許証" in notice.text
    assert "ご請求への対応" in browser.find_element(By.ID, "form-data-purpose").text
    browser.find_element(By.ID, "procedure-link").click()
    title = browser.find_element(By.ID, "procedure-title")
    assert title.text == "保有個人データに関する事項の公表及び開示等のご請求の手続"
    assert browser.find_element(By.ID, "business-name").text == "株式会社InnovativeAI"
    fee = browser.find_element(By.CSS_SELECTOR, "#type-disclosure .fee").text
    assert fee == "1,000円（税込）"
    assert browser.find_element(By.CSS_SELECTOR, "#type-correction .fee").text == "無料"
    assert "個人情報お問い合わせ窓口 宛" in browser.find_element(By.ID, "request-post").text
    assert "定額小為替" in browser.find_element(By.ID, "payment-methods").text
    assert "委任状" in browser.find_element(By.ID, "agent-documents").text
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#procedure h3")]
    assert headings == [
        "1. 個人情報取扱事業者の名称、住所及び代表者の氏名",
        "2. 保有個人データの利用目的",
        "3. 開示等のご請求の手続",
        "4. 保有個人データの安全管理のために講じた措置",
        "5. 保有個人データの取扱いに関する苦情の申出先",
        "6. 認定個人情報保護団体",
    ]
    # The table is laid out, not collapsed: each fee sits in its own visible cell.
    cell = browser.find_element(By.CSS_SELECTOR, "#type-disclosure .fee")
    assert cell.is_displayed()
    assert cell.size["width"] > 0


def test_the_english_procedure(live_url: str, browser: WebDriver) -> None:
    browser.get(live_url + "/?lang=en")
    browser.find_element(By.ID, "procedure-link").click()
    assert browser.current_url.endswith("/procedure?lang=en")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert browser.find_element(By.ID, "business-name").text == "InnovativeAI Inc."
    fee = browser.find_element(By.CSS_SELECTOR, "#type-purpose_notice .fee").text
    assert fee == "JPY 1,000 (tax included)"
    assert "Personal Information Desk" in browser.find_element(By.ID, "complaints-desk").text
    assert "registered mail" in browser.find_element(By.ID, "request-post").text
    # Switching language keeps the page.
    browser.find_element(By.LINK_TEXT, "日本語").click()
    assert browser.find_element(By.ID, "business-name").text == "株式会社InnovativeAI"
