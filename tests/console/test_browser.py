"""The desk's day in headless Chromium: log in, filter, verify, refuse, triage, reports.

Screenshots of the queue, a request and the reports page are written to docs/console/ when
``DSRFLOW_SCREENSHOTS=1`` (they are checked in; see docs/console.md).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlmodel import Session, select

from dsrflow.app import create_app
from dsrflow.audit.models import Event
from dsrflow.inbound_mail.models import InboundMessage
from dsrflow.outbound_mail.models import OutboxMessage
from dsrflow.requests import service
from dsrflow.requests.models import Request
from dsrflow.requests.schemas import RequestCreate, TransitionIn
from dsrflow.runtime import Runtime
from tests.conftest import ROOT, make_request
from tests.console.conftest import new_token
from tests.console.test_desk_work import _triage
from tests.services import free_port, require
from tests.services.browser import chromium_driver

SHOTS = ROOT / "docs" / "console"
pytestmark = pytest.mark.browser


@pytest.fixture
def live_url(rt: Runtime) -> Iterator[str]:
    port = free_port()
    # Forms are checked against BASE_URL's origin: serve where BASE_URL says.
    rt.settings.base_url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(rt), host="127.0.0.1", port=port, log_level="warning", log_config=None
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
    with require(chromium_driver, window_size=(1360, 1000)) as driver:
        driver.implicitly_wait(10)
        yield driver


def shoot(browser: WebDriver, name: str) -> None:
    if os.environ.get("DSRFLOW_SCREENSHOTS") != "1":
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1360, min(max(int(height) + 120, 700), 2400))
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(SHOTS / f"{name}.png"))
    browser.set_window_size(1360, 1000)


def go(browser: WebDriver, by: str, value: str) -> None:
    """Click what leads to another page, and wait until that page has replaced this one (the
    old document carries a mark the new one does not have)."""
    browser.execute_script("window.__leaving = true")
    browser.find_element(by, value).click()
    WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,)).until(
        lambda b: b.execute_script("return document.readyState === 'complete' && !window.__leaving")
    )


def log_in(browser: WebDriver, live_url: str, token: str) -> None:
    browser.delete_all_cookies()
    browser.get(live_url + "/console/")
    assert browser.current_url.startswith(live_url + "/console/login")
    field = browser.find_element(By.ID, "token")
    field.send_keys(token)
    go(browser, By.ID, "login")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("対応中の請求")


def test_log_in_filter_verify_and_refuse(rt: Runtime, live_url: str, browser: WebDriver) -> None:
    now = datetime.now(UTC)
    make_request(rt, name="山田 太郎", received_at=now - timedelta(days=3))
    make_request(
        rt, "suspension", name="鈴木 一郎", email="ichiro@example.jp", state="identity_verified"
    )
    make_request(
        rt,
        "correction",
        name="高橋 直子",
        email="naoko@example.jp",
        received_at=now - timedelta(days=20),
    )
    make_request(rt, "purpose_notice", name="John Smith", email="john@example.com", language="en")
    make_request(
        rt,
        "disclosure",
        name="伊藤 美咲",
        email="misaki@example.jp",
        agent={"name": "伊藤 健", "email": "ken@example.jp", "relation": "legal_representative"},
    )
    token = new_token(rt)
    log_in(browser, live_url, token)
    # A bad token gets the login page again, with the reason.
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert len(rows) == 5
    assert "tone-overdue" in rows[0].find_element(By.CSS_SELECTOR, "td.days").get_attribute("class")
    shoot(browser, "queue")

    # Filter: the type, then a lookup by name.
    Select(browser.find_element(By.ID, "type")).select_by_value("suspension")
    go(browser, By.ID, "filter")
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert len(rows) == 1
    assert "鈴木 一郎" in rows[0].text
    go(browser, By.LINK_TEXT, "条件をクリア")
    browser.find_element(By.ID, "q").send_keys("山田太郎")
    go(browser, By.ID, "filter")
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert len(rows) == 1
    assert "山田 太郎" in rows[0].text

    # Verify identity, with the keyboard: open the action, pick the method, preview, confirm.
    go(browser, By.CSS_SELECTOR, "#queue tbody tr a")
    reference = browser.find_element(By.ID, "reference").text
    browser.find_element(By.CSS_SELECTOR, "#action-verify_identity summary").click()
    Select(browser.find_element(By.ID, "verify_identity-method")).select_by_value(
        "id_document_copy"
    )
    browser.find_element(By.ID, "verify_identity-evidence").send_keys("運転免許証の写し")
    go(browser, By.ID, "preview-verify_identity")
    assert "請求者に通知は送られません" in browser.find_element(By.ID, "no-letter").text
    go(browser, By.ID, "confirm")
    states = rt.definitions.workflow("disclosure").states
    assert browser.find_element(By.ID, "state").text == states["identity_verified"].label.ja
    assert "記録しました" in browser.find_element(By.ID, "notice").text

    # Refuse with a reason that fits now (a substantive one, since identity is verified).
    browser.find_element(By.CSS_SELECTOR, "#action-refuse summary").click()
    browser.find_element(By.ID, "refuse-reason_code-DISC_BUSINESS_IMPEDIMENT").click()
    browser.find_element(By.ID, "refuse-explanation").send_keys(
        "ご請求の範囲が全サービスの全期間に及び、業務に著しい支障が生じるためです。"
    )
    shoot(browser, "request")
    go(browser, By.ID, "preview-refuse")
    letter = browser.find_element(By.ID, "letter").text
    assert "業務の適正な実施に著しい支障" in letter
    assert "全サービスの全期間" in letter
    go(browser, By.ID, "confirm")
    assert browser.find_element(By.ID, "state").text == states["refused"].label.ja
    with Session(rt.db) as s:
        request = s.exec(select(Request).where(Request.reference == reference)).one()
        refused = s.exec(
            select(OutboxMessage).where(
                OutboxMessage.request_id == request.id, OutboxMessage.letter == "refused"
            )
        ).one()
    assert request.state == "refused"
    assert "全サービスの全期間" in refused.body

    # Focus is visible: the focused control gets an outline.
    browser.get(live_url + "/console/")
    browser.find_element(By.ID, "q").click()
    outline = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_convert_and_dismiss_inbox_items(
    rt: Runtime, live_url: str, browser: WebDriver, session: Session
) -> None:
    first = _triage(rt, session, subject="inquiry-a", sender="ichiro@example.jp")
    second = _triage(rt, session, subject="inquiry-b", sender="hanako@example.jp")
    log_in(browser, live_url, new_token(rt))
    go(browser, By.LINK_TEXT, "振分け待ちメール")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#inbox tbody tr")) == 2
    go(browser, By.LINK_TEXT, "inquiry-a")
    Select(browser.find_element(By.ID, "convert-type")).select_by_value("disclosure")
    go(browser, By.ID, "convert")
    reference = browser.find_element(By.ID, "reference").text
    assert reference.startswith("DSR-")
    browser.get(live_url + f"/console/inbox/{second}")
    browser.find_element(By.ID, "dismiss-note").send_keys("一般的なお問い合わせ")
    Select(browser.find_element(By.ID, "dismiss-reply")).select_by_value("not_a_request")
    go(browser, By.ID, "dismiss")
    assert "閉じました" in browser.find_element(By.ID, "notice").text
    assert browser.find_elements(By.ID, "inbox-empty")
    with Session(rt.db) as s:
        rows = {r.id: r.status for r in s.exec(select(InboundMessage))}
        reply = s.exec(
            select(OutboxMessage).where(OutboxMessage.recipient == "hanako@example.jp")
        ).one()
    assert rows[first] == "created"
    assert rows[second] == "dismissed"
    assert reply.letter == "triage_not_a_request"


def test_reports_page_and_csv_export(
    rt: Runtime, live_url: str, browser: WebDriver, tmp_path: Path
) -> None:
    pytest.importorskip("dsrflow.reports.service", reason="report figures (consoledata)")
    now = datetime.now(UTC)
    made = [
        make_request(rt, state="fulfilled", received_at=now - timedelta(days=70)),
        make_request(rt, "correction", email="b@example.jp", received_at=now - timedelta(days=65)),
        make_request(rt, "correction", email="c@example.jp", state="refused"),
        make_request(rt, "suspension", email="d@example.jp", state="withdrawn"),
        make_request(rt, "purpose_notice", email="e@example.jp"),
    ]
    log_in(browser, live_url, new_token(rt))
    go(browser, By.LINK_TEXT, "集計")
    assert browser.find_element(By.TAG_NAME, "h1").text == "集計"
    assert browser.find_elements(By.CSS_SELECTOR, "#figures tbody tr")
    shoot(browser, "reports")
    # Export: the browser downloads the file with its own session.
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    browser.find_element(By.ID, "csv").click()
    deadline = time.monotonic() + 15
    while not list(tmp_path.glob("requests-*.csv")):
        assert time.monotonic() < deadline, "the CSV was not downloaded"
        time.sleep(0.2)
    time.sleep(0.3)  # let Chromium finish writing
    lines = next(tmp_path.glob("requests-*.csv")).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("reference,type,channel,received_at")
    assert len(lines) == 1 + len(made)


def test_fulfil_with_a_package_then_download_it_as_the_requester(
    rt: Runtime, live_url: str, browser: WebDriver, tmp_path: Path
) -> None:
    pytest.importorskip("dsrflow.packages.service", reason="disclosure packages (consoledata)")
    with Session(rt.db, expire_on_commit=False) as s:
        submitted = service.submit(
            rt,
            s,
            RequestCreate(
                type="disclosure",
                name="山田 太郎",
                email="taro@example.jp",
                details="会員情報の開示を求めます。",
                disclosure_method="electronic",
            ),
            channel="web",
        )
        service.transition(
            rt,
            s,
            submitted.request.id,
            TransitionIn(trigger="verify_identity", method="id_document_copy", evidence="免許証"),
            actor="test",
        )
    data = tmp_path / "会員情報.csv"
    data.write_bytes("氏名,メール\n山田 太郎,taro@example.jp\n".encode())
    log_in(browser, live_url, new_token(rt))
    browser.get(f"{live_url}/console/requests/{submitted.request.id}")
    # The fee first, then the package, then the fulfilment with the method used.
    browser.find_element(By.CSS_SELECTOR, "#action-payment summary").click()
    Select(browser.find_element(By.ID, "payment-method")).select_by_value("bank_transfer")
    go(browser, By.ID, "record-payment")
    browser.find_element(By.ID, "package-files").send_keys(str(data))
    go(browser, By.ID, "attach-package")
    assert "会員情報.csv" in browser.find_element(By.CSS_SELECTOR, "ul.package").text
    browser.find_element(By.CSS_SELECTOR, "#action-fulfill summary").click()
    browser.find_element(By.ID, "fulfill-summary").send_keys(
        "ご登録の会員情報を、ステータスページからダウンロードいただけるようにしました。"
    )
    Select(browser.find_element(By.ID, "fulfill-method_used")).select_by_value("electronic")
    go(browser, By.ID, "preview-fulfill")
    go(browser, By.ID, "confirm")
    states = rt.definitions.workflow("disclosure").states
    assert browser.find_element(By.ID, "state").text == states["fulfilled"].label.ja
    # The requester downloads it from the status page; no letter carries the file.
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    browser.get(f"{live_url}/status/{submitted.status_token}")
    browser.find_element(By.LINK_TEXT, "会員情報.csv").click()
    deadline = time.monotonic() + 15
    while not [p for p in downloads.iterdir() if not p.name.endswith(".crdownload")]:
        assert time.monotonic() < deadline, "the package was not downloaded"
        time.sleep(0.2)
    (got,) = list(downloads.iterdir())
    assert got.read_bytes() == data.read_bytes()
    with Session(rt.db) as s:
        events = [
            e.kind for e in s.exec(select(Event).where(Event.request_id == submitted.request.id))
        ]
        bodies = s.exec(select(OutboxMessage.body)).all()
    assert "package_attached" in events
    assert "package_downloaded" in events  # every download is audited
    assert not any("山田 太郎,taro@example.jp" in body for body in bodies)
