"""Issue 14, one test per finding: decoding defects, the sender's own words, list and bulk
mail, phishing-like subjects, the arrival, bounces (no database)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dsrflow.inbound_mail.charsets import decode_bytes
from dsrflow.inbound_mail.classify import REFERENCE, detect_type, own_words
from dsrflow.inbound_mail.headers import sender
from dsrflow.inbound_mail.reading import read_message
from dsrflow.inbound_mail.rules_file import IntakeRules, IntakeRulesError, load_rules
from dsrflow.inbound_mail.schemas import InboundMail
from tests.conftest import WORKFLOWS

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
OURS = {"info@innovativeai.co.jp"}


@pytest.fixture(scope="module")
def rules() -> IntakeRules:
    return load_rules(WORKFLOWS / "intake" / "mail.yaml")


def read(raw: bytes, rules: IntakeRules, **kwargs: object) -> InboundMail:
    return read_message(raw, rules, source="file", own_addresses=OURS, now=NOW, **kwargs)  # type: ignore[arg-type]


def jis(text: str) -> bytes:
    return text.encode("iso2022_jp")


def mail(headers: str, body: bytes = b"", ctype: str = "text/plain; charset=utf-8") -> bytes:
    head = headers.replace("\n", "\r\n").encode("utf-8", "surrogateescape")
    return head + f"\r\nContent-Type: {ctype}\r\n\r\n".encode() + body


# --------------------------------------------------------------------------- decoding


def test_au_pictograms_in_iso_2022_jp_are_one_placeholder_each() -> None:
    pictogram = b"\x1b$B\x75\x41\x1b(B"  # a code in a row no JIS table defines
    data = jis("個人情報を削除してください") + pictogram + jis("よろしく")
    text = decode_bytes(data, "iso-2022-jp")
    assert text == "個人情報を削除してください〓よろしく"
    inside = b"\x1b$B" + jis("晴れ")[3:-3] + b"\x76\x21" + jis("です")[3:-3] + b"\x1b(B"
    assert decode_bytes(inside, "iso-2022-jp") == "晴れ〓です", "no replacement, no stray byte"


def test_text_labelled_gb2312_is_read_as_gb18030() -> None:
    text = "您好，附件是我們的報價單。"  # 們, 報, 價, 單 are GBK, not GB2312
    assert decode_bytes(text.encode("gbk"), "gb2312") == text
    assert decode_bytes(text.encode("gb18030"), "GB2312") == text


def test_an_ascii_only_utf16_part_is_text(rules: IntakeRules) -> None:
    for codec, label in (("utf-16-le", "utf-16le"), ("utf-16-be", "utf-16"), ("utf-16", "utf-16")):
        data = "Please delete my personal data.".encode(codec)
        assert decode_bytes(data, label) == "Please delete my personal data.", label
    body = base64.b64encode("Please delete my personal data.\r\n".encode("utf-16-le"))
    raw = mail(
        "From: u@example.com\nSubject: Request\nMessage-ID: <u16@example.com>",
        b"" + body,
        "text/plain; charset=UTF-16LE\r\nContent-Transfer-Encoding: base64",
    )
    got = read(raw, rules)
    assert got.quarantine_reason is None
    assert got.detected_type == "suspension"
    assert decode_bytes(b"plain ascii", "utf-16") == "plain ascii", "a wrong label on ASCII"


def test_a_message_that_starts_with_a_byte_order_mark_is_read(rules: IntakeRules) -> None:
    raw = b"\xef\xbb\xbf" + mail(
        "From: taro@example.jp\nSubject: =?utf-8?B?6ZaL56S66KuL5rGC?=\nMessage-ID: <bom@x.jp>",
        "開示を請求します。".encode(),
    )
    got = read(raw, rules)
    assert got.quarantine_reason is None
    assert (got.from_address, got.subject, got.detected_type) == (
        "taro@example.jp",
        "開示請求",
        "disclosure",
    )
    assert got.raw == raw, "kept as received, mark included"


@pytest.mark.parametrize(
    ("field", "name", "address"),
    [
        ("Taro Yamada taro@example.jp", "Taro Yamada", "taro@example.jp"),
        ("=?utf-8?B?5bGx55Sw5aSq6YOO?= taro@example.jp", "山田太郎", "taro@example.jp"),
        ("山田 <山田@例え.jp>", "山田", "山田@例え.jp"),
        ("yamada@ドメイン.jp", None, "yamada@ドメイン.jp"),
        ("Taro <Taro@Example.JP>", "Taro", "Taro@example.jp"),
    ],
)
def test_senders_without_brackets_and_in_utf8_keep_their_address(
    field: str, name: str | None, address: str, rules: IntakeRules
) -> None:
    who = sender(field)
    assert (who.name, who.address) == (name, address)
    raw = mail(
        f"From: {field}\nSubject: x\nMessage-ID: <s@example.jp>".encode().decode(
            "ascii", "surrogateescape"
        ),
        b"hello",
    )
    assert read(raw, rules).from_address == address, "also written raw (RFC 6532)"


# --------------------------------------------------------------------------- own words


def test_the_missed_requests_are_recognised(rules: IntakeRules) -> None:
    assert detect_type("", "退会したので個人情報を消してください", rules)[0] == "suspension"
    text = (
        "私の個人データの開示をお願いいたします。\n\n"
        "本メールは機密情報を含みます。誤って受信された場合は、\n"
        "送信者にご連絡のうえ、本メールを削除してください。"
    )
    assert detect_type("個人情報開示のお願い", text, rules) == ("disclosure", None)


@pytest.mark.parametrize(
    "footer",
    [
        "本メールは機密情報を含む場合があります。誤って受信された場合は、本メールを削除してください。",
        "※このメールにお心当たりのない方は、お手数ですが本メールを削除してください。",
        "CONFIDENTIALITY NOTICE: If you are not the intended recipient, please notify the\n"
        "sender and erase this e-mail.",
        "If you have received this email in error, please delete it.",
    ],
)
def test_a_disclaimer_is_not_the_senders_words(footer: str, rules: IntakeRules) -> None:
    text = f"いつもお世話になっております。\n資料をお送りします。\n\n{footer}"
    assert detect_type("資料送付", text, rules)[0] is None
    assert footer.splitlines()[0] not in own_words(text, rules).text


def test_quoted_text_signatures_and_forwards_are_left_out(rules: IntakeRules) -> None:
    gmail_ja = (
        "了解です。\n\n2026年11月20日(金) 10:00 山田 <a@example.jp>:\n\n個人情報を削除してください"
    )
    gmail_en = (
        "OK.\n\nOn Fri, Nov 20, 2026 at 10:00 AM Taro <a@example.jp> wrote:\nplease erase my data"
    )
    outlook = "Fine.\n\nFrom: Bob\nSent: Friday\nTo: Alice\nSubject: x\n\nplease delete my account"
    signature = "Thanks.\n-- \nDelete my number from your phone: +81 3 1234"
    for text in (gmail_ja, gmail_en, outlook, signature):
        assert detect_type("", text, rules)[0] is None, text
    forwarded = own_words("FYI\n\n---------- Forwarded message ---------\n開示請求", rules)
    assert forwarded == type(forwarded)(text="FYI\n", forwarded=True)
    rule_signature = "資料です。\n━━━━━━━━━━━━\n株式会社サンプル\nTEL: 03-1234-5678\n個人情報保護室"
    assert own_words(rule_signature, rules).text == "資料です。"
    not_a_signature = "前置き\n━━━━━━━━━━━━\n私の個人情報を削除してください。\n以上です。"
    assert "削除" in own_words(not_a_signature, rules).text, "no contact details: kept"


def test_a_weak_word_needs_personal_data(rules: IntakeRules) -> None:
    assert (
        detect_type("Re: 決算短信の開示について", "開示前に最終版をお送りください。", rules)[0]
        is None
    )
    assert detect_type("【適時開示】業績予想の修正", "", rules)[0] is None
    why = detect_type("見積書", "訂正版をお送りします。", rules)[1]
    assert why is not None
    assert "no personal data" in why
    assert detect_type("登録情報", "住所を訂正してください", rules)[0] == "correction"


def test_a_weak_word_in_the_subject_does_not_outvote_the_text(rules: IntakeRules) -> None:
    assert detect_type("情報開示", "登録情報を開示してほしいです", rules)[0] == "disclosure"
    assert detect_type("訂正のお願い", "私の個人情報の開示をお願いします", rules) == (
        None,
        "names several request types (correction, disclosure)",
    )
    assert detect_type("開示請求", "訂正もお願いします", rules)[0] == "disclosure", "a phrase"


def test_references_are_found_inside_japanese_text() -> None:
    assert REFERENCE.findall("受付番号DSR-2026-000004の件") == ["DSR-2026-000004"]
    assert REFERENCE.findall("XDSR-2026-000004 DSR-2026-0000041") == []


# --------------------------------------------------------------------------- never requests


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("List-Unsubscribe: <https://mag.example.jp/u>", "list mail (list-unsubscribe header)"),
        ("List-Id: <news.example.jp>", "list mail (list-id header)"),
        ("X-SG-EID: abc", "bulk mail (x-sg-eid header)"),
    ],
)
def test_list_and_bulk_mail_is_never_a_request(
    header: str, reason: str, rules: IntakeRules
) -> None:
    subject = base64.b64encode("【訂正とお詫び】".encode()).decode()
    raw = mail(
        f"From: shop@example.jp\nSubject: =?utf-8?B?{subject}?=\n{header}\nMessage-ID: <l@x>",
        "先日の内容を訂正します。会員情報の変更はマイページから。".encode(),
    )
    assert read(raw, rules).ignore_reason == reason


def test_known_bulk_senders_are_never_requests(rules: IntakeRules) -> None:
    for address, reason in (
        ("newsletter@shop.example.jp", "bulk mail (sender newsletter)"),
        ("store@store.mcsv.net", "bulk mail (sender domain store.mcsv.net)"),
    ):
        raw = mail(f"From: {address}\nSubject: Delete my data\nMessage-ID: <b@x>", b"x")
        assert read(raw, rules).ignore_reason == reason


def test_phishing_like_subjects_are_flagged(rules: IntakeRules) -> None:
    subject = base64.b64encode("【重要】ご利用停止のお知らせ".encode()).decode()
    raw = mail(
        f"From: support@secure.example.top\nSubject: =?utf-8?B?{subject}?=\nMessage-ID: <p@x>", b""
    )
    got = read(raw, rules)
    assert got.phishing_like == "ご利用停止のお知らせ"
    assert got.detected_type == "suspension", "the words alone would make a request"
    plain = mail(
        "From: a@example.jp\nSubject: =?utf-8?B?5Yip55So5YGc5q2i44Gu44GK6aGY44GE?=\n",
        b"",
    )
    assert read(plain, rules).phishing_like is None, "利用停止のお願い is a request"


# --------------------------------------------------------------------------- arrival


def test_the_arrival_is_our_received_header_never_a_forged_or_old_one(rules: IntakeRules) -> None:
    ours = "Received: from x by mx.innovativeai.co.jp; Sun, 29 Nov 2026 10:00:00 +0900\n"
    forged = "Received: from spam by spam.example.biz; Mon, 30 Nov 2026 11:00:00 +0900\n"
    base = "From: a@example.jp\nSubject: x\nMessage-ID: <r@x>\nDate: Mon, 3 Jan 2005 10:00:00 +0900"
    got = read(mail(forged + ours + base, b"x"), rules)
    assert (got.received_at, got.received_at_source) == (
        datetime(2026, 11, 29, 1, tzinfo=UTC),
        "received",
    )
    spam = read(
        mail("Received: by spam.example.biz; Mon, 3 Jan 2005 10:00:00 -0500\n" + base, b"x"), rules
    )
    assert (spam.received_at, spam.received_at_source) == (NOW, "now")
    old_ours = "Received: by mx.innovativeai.co.jp; Mon, 3 Jan 2005 10:00:00 +0900\n"
    assert read(mail(old_ours + base, b"x"), rules).received_at_source == "now"
    for internal in (NOW - timedelta(days=3 * 365), NOW + timedelta(days=1)):
        got = read(mail(ours + base, b"x"), rules, received_at=internal)
        assert got.received_at_source == "received", "a mailbox date years off is not believed"


# --------------------------------------------------------------------------- bounces


@pytest.mark.parametrize("field", ["MAILER-DAEMON <>", "<>", "MAILER-DAEMON", "postmaster"])
def test_bounces_without_a_usable_sender_are_bounces(field: str, rules: IntakeRules) -> None:
    subject = base64.b64encode("メールエラー通知".encode()).decode()
    raw = mail(
        f"From: {field}\nSubject: =?utf-8?B?{subject}?=\nMessage-ID: <kddi@ezweb.ne.jp>",
        "送信されたメールは、以下の理由により宛先に届きませんでした。\n\n"
        "------ 元のメールのヘッダ ------\nMessage-ID: <ack-1@innovativeai.co.jp>\n".encode(),
    )
    got = read(raw, rules)
    assert got.quarantine_reason is None
    assert got.ignore_reason is not None
    assert got.ignore_reason.startswith("bounce")
    assert got.returned_ids == ("<ack-1@innovativeai.co.jp>",)
    assert "<ack-1@innovativeai.co.jp>" in got.thread_ids


def test_a_bounce_is_recognised_from_its_words(rules: IntakeRules) -> None:
    raw = mail(
        "From: Mail Delivery <robot@mail.example.net>\nSubject: x\nMessage-ID: <q@x>",
        b"Hi. This is the qmail-send program at mail.example.net.\n\n"
        b"--- Below this line is a copy of the message.\n\n"
        b"Message-ID:\n <ack-2@innovativeai.co.jp>\n",
    )
    got = read(raw, rules)
    assert got.ignore_reason == "bounce (delivery failure text)"
    assert got.returned_ids == ("<ack-2@innovativeai.co.jp>",)


def test_a_mail_without_from_is_still_quarantined(rules: IntakeRules) -> None:
    got = read(mail("Subject: x\nMessage-ID: <n@x>", "開示請求".encode()), rules)
    assert got.quarantine_reason == "no usable sender address (From)"


# --------------------------------------------------------------------------- the rules file


def test_recognisers_are_validated_when_loaded(tmp_path: Path) -> None:
    limits = (
        "limits: {max_message_bytes: 1, max_attachment_bytes: 1, max_attachments: 1, "
        "max_text_chars: 1}\nignore: {}\ntypes: {}\n"
    )
    path = tmp_path / "mail.yaml"
    path.write_text(limits + "own_words: {quote_starts: ['ok', '(unclosed']}\n", encoding="utf-8")
    with pytest.raises(IntakeRulesError, match=r"own_words.quote_starts\[1\]: not a regular"):
        load_rules(path)
    path.write_text(limits + "not_requests: {phishing_subjects: ['[']}\n", encoding="utf-8")
    with pytest.raises(IntakeRulesError, match=r"not_requests.phishing_subjects\[0\]"):
        load_rules(path)
    path.write_text(limits + "own_words: {disclaimer: []}\n", encoding="utf-8")
    with pytest.raises(IntakeRulesError, match=r"own_words\.disclaimer: Extra inputs"):
        load_rules(path)


def test_a_returned_header_written_straight_after_the_boundary_is_found(
    rules: IntakeRules,
) -> None:
    raw = mail(
        "From: MAILER-DAEMON@mail.example.co.jp\nSubject: Returned Mail: User unknown\n"
        "Message-ID: <bounce@mail.example.co.jp>",
        b"--b\r\nContent-Type: text/plain\r\n\r\n---The following addresses had delivery errors---"
        b"\r\n\r\n--b\r\nReturn-Path: <info@innovativeai.co.jp>\r\n"
        b"Message-ID: <ack-3@innovativeai.co.jp>\r\nSubject: x\r\n\r\nYour request.\r\n--b--\r\n",
        'multipart/mixed; boundary="b"',
    )
    got = read(raw, rules)
    assert got.ignore_reason == "bounce (sender mailer-daemon)"
    assert got.returned_ids == ("<ack-3@innovativeai.co.jp>",)


def test_a_bounce_names_our_letter_by_its_threading_or_an_attached_original(
    rules: IntakeRules,
) -> None:
    threaded = mail(
        "From: postmaster@example.net\nSubject: Undeliverable\nMessage-ID: <t@x>\n"
        "In-Reply-To: <ack-4@innovativeai.co.jp>",
        b"Delivery has failed to these recipients or groups.",
    )
    assert read(threaded, rules).returned_ids == ("<ack-4@innovativeai.co.jp>",)
    attached = mail(
        "From: MAILER-DAEMON@example.net\nSubject: Returned mail\nMessage-ID: <a@x>",
        b"--b\r\nContent-Type: text/plain\r\n\r\nUser unknown.\r\n--b\r\n"
        b'Content-Type: text/plain; name="original.txt"\r\n'
        b"Content-Disposition: attachment; filename=original.txt\r\n\r\n"
        b"Message-ID: <ack-5@innovativeai.co.jp>\r\nSubject: x\r\n\r\n--b--\r\n",
        'multipart/mixed; boundary="b"',
    )
    assert read(attached, rules).returned_ids == ("<ack-5@innovativeai.co.jp>",)
