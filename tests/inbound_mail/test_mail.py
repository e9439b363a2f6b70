"""Reading mail without a database: charsets, headers, arrival time, limits, types, rules."""

from __future__ import annotations

import base64
import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dsrflow.inbound_mail.charsets import decode_bytes
from dsrflow.inbound_mail.classify import detect_type, language_of
from dsrflow.inbound_mail.headers import decode_header_text, message_id_of, thread_ids
from dsrflow.inbound_mail.imap import parse_internaldate, quote_mailbox
from dsrflow.inbound_mail.reading import read_message
from dsrflow.inbound_mail.rules_file import IntakeRules, IntakeRulesError, load_rules
from dsrflow.inbound_mail.schemas import InboundMail
from tests.conftest import WORKFLOWS

TYPES = (
    "disclosure",
    "suspension",
    "correction",
    "third_party_cessation",
    "third_party_record_disclosure",
    "purpose_notice",
)
NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rules() -> IntakeRules:
    return load_rules(WORKFLOWS / "intake" / "mail.yaml", TYPES)


def read(raw: bytes, rules: IntakeRules, **kwargs: Any) -> InboundMail:
    return read_message(raw, rules, source="file", now=NOW, **kwargs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def jis(text: str) -> bytes:
    """CP50220: ISO-2022-JP whose JIS X 0208 set is CP932's (how Windows mailers send ①)."""
    out, kanji = bytearray(), False
    for char in text:
        code = char.encode("cp932")
        if len(code) == 1:
            if kanji:
                out += b"\x1b(B"
                kanji = False
            out += code
            continue
        if not kanji:
            out += b"\x1b$B"
            kanji = True
        s1, s2 = code
        s1 -= 0x40 if s1 >= 0xE0 else 0
        j1 = (s1 - 0x81) * 2 + 0x21
        out += bytes((j1 + 1, s2 - 0x7E) if s2 >= 0x9F else (j1, s2 - 0x1F - (s2 >= 0x80)))
    return bytes(out + (b"\x1b(B" if kanji else b""))


# --------------------------------------------------------------------------- charsets


@pytest.mark.parametrize(
    ("data", "label", "text"),
    [
        ("開示請求".encode("iso2022_jp"), "iso-2022-jp", "開示請求"),
        (jis("①㈱髙橋"), "ISO-2022-JP", "①㈱髙橋"),  # NEC and IBM extensions in ISO-2022-JP
        (b"\x1b(I12\x1b(B", "iso-2022-jp", "ｱｲ"),  # half-width katakana, ESC ( I
        (b'\x1b$B$"\x0e1\x0f\x1b(B', "iso-2022-jp", "あｱ"),  # and by SO/SI (CP50221)
        ("①㈱髙橋".encode("cp932"), "shift_jis", "①㈱髙橋"),  # Shift_JIS read as CP932
        ("訂正".encode("cp932"), "x-sjis", "訂正"),
        ("消去をお願いします".encode("euc_jp"), "euc-jp", "消去をお願いします"),
        (bytes((0xAD, 0xA1, 0xAD, 0xEA)), "EUC-JP", "①㈱"),  # NEC row 13 in EUC-JP (CP51932)
        ("利用停止".encode(), "utf-8", "利用停止"),
        # Mislabelled or unlabelled: read as what they are.
        ("利用停止".encode("cp932"), "utf-8", "利用停止"),
        ("José".encode(), "iso-8859-1", "José"),
        ("第三者提供の停止".encode("cp932"), None, "第三者提供の停止"),
        ("第三者提供の停止".encode("euc_jp"), None, "第三者提供の停止"),
        ("開示".encode("iso2022_jp"), None, "開示"),
        ("開示".encode("iso2022_jp"), "us-ascii", "開示"),
        ("開示のお願い".encode("cp932"), "iso-2022-jp", "開示のお願い"),  # 8-bit: not ISO-2022-JP
        ("訂正".encode(), "x-no-such-charset", "訂正"),
        ("Grüße".encode("latin-1"), "iso-8859-1", "Grüße"),
        (b"plain", None, "plain"),
        (b"", "utf-8", ""),
    ],
)
def test_decode_bytes(data: bytes, label: str | None, text: str) -> None:
    assert decode_bytes(data, label) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (f"=?ISO-2022-JP?B?{b64('開示・訂正'.encode('iso2022_jp'))}?=", "開示・訂正"),
        ("=?UTF-8?Q?=E5=88=A9=E7=94=A8=E5=81=9C=E6=AD=A2?=", "利用停止"),
        ("=?UTF-8?B?6ZaL56S6?= =?UTF-8?B?6KuL5rGC?=", "開示請求"),  # space between words dropped
        ("Re: =?UTF-8?B?6ZaL56S6?= now", "Re: 開示 now"),
        # One character split over two words, as some mailers do.
        (
            f"=?UTF-8?B?{b64('開示'.encode()[:2])}?=\r\n =?UTF-8?B?{b64('開示'.encode()[2:])}?=",
            "開示",
        ),
        ("=?utf-8*ja?B?6ZaL56S6?=", "開示"),  # RFC 2231 language tag
        ("=?utf-8?B?!!!?= broken", "=?utf-8?B?!!!?= broken"),  # not an encoded word: kept
        ("=?x-unknown?B?6ZaL56S6?=", "開示"),  # unknown charset: read as what it is
        ("開示".encode().decode("ascii", "surrogateescape"), "開示"),  # raw 8-bit UTF-8
        ("訂正".encode("cp932").decode("ascii", "surrogateescape"), "訂正"),  # raw Shift_JIS
        ("plain subject", "plain subject"),
    ],
)
def test_decode_header_text(value: str, text: str) -> None:
    assert decode_header_text(value) == text


def test_message_ids_and_threads() -> None:
    assert message_id_of(" <a.b@example.jp> (comment)") == "<a.b@example.jp>"
    assert message_id_of("no-brackets@example.jp") == "<no-brackets@example.jp>"
    assert message_id_of("") is None
    assert message_id_of("<" + "x" * 300 + "@example.jp>") is None
    assert thread_ids("<b@x>", "<a@x>\r\n <b@x> <c@x>") == ("<b@x>", "<c@x>", "<a@x>")
    assert thread_ids(None, None) == ()


def test_language() -> None:
    assert language_of("開示請求") == "ja"
    assert language_of("個人データを送ってください") == "ja"
    assert language_of("Please rectify my name: 小川 健") == "en"
    assert language_of("Please delete my data") == "en"


def test_imap_helpers() -> None:
    assert parse_internaldate("30-Nov-2026 10:00:00 +0900") == datetime(2026, 11, 30, 1, tzinfo=UTC)
    assert parse_internaldate(" 1-Dec-2026 00:00:00 -0500") == datetime(2026, 12, 1, 5, tzinfo=UTC)
    assert parse_internaldate("garbage") is None
    assert quote_mailbox("INBOX") == '"INBOX"'
    assert quote_mailbox('A "b" & c') == '"A \\"b\\" &- c"'
    assert quote_mailbox("受信箱") == '"&U9dP4Xux-"'


# --------------------------------------------------------------------------- what it says


@pytest.mark.parametrize(
    ("subject", "text", "expected"),
    [
        ("開示請求", "", "disclosure"),
        ("", "保有個人データの開示を求めます", "disclosure"),
        ("第三者提供記録の開示", "", "third_party_record_disclosure"),  # longest phrase wins
        ("利用目的の開示", "", "purpose_notice"),
        ("", "第三者への提供を停止してください", "third_party_cessation"),
        ("", "内容の削除をお願いします", "correction"),  # 訂正等 (Art. 34), not erasure
        ("", "個人情報を削除してください", "suspension"),
        ("ＤＥＬＥＴＥ ＭＹ account", "", "suspension"),  # full-width letters
        ("Rectification", "", "correction"),
        ("", "the third-party provision records, please", "third_party_record_disclosure"),
        ("", "It was an incorrect mystery", None),  # whole words only
        ("Hello", "> please delete my data\nThanks for the answer", None),  # quoted
        ("", "Thanks\n-----Original Message-----\nPlease erase my data", None),
        ("", "開示\n請求します", "disclosure"),  # a line break inside Japanese text
        ("", "利用停止と訂正をお願いします", None),  # two types: triage
    ],
)
def test_detect_type(subject: str, text: str, expected: str | None, rules: IntakeRules) -> None:
    assert detect_type(subject, text, rules)[0] == expected


def test_subject_decides_before_body(rules: IntakeRules) -> None:
    assert detect_type("開示請求", "訂正もお願いします", rules) == ("disclosure", None)
    assert detect_type("Hello", "copy of my personal data; correct my name", rules) == (
        None,
        "names several request types (correction, disclosure)",
    )


# --------------------------------------------------------------------------- whole messages

BASE = (
    b"From: Taro <taro@example.jp>\r\nSubject: Disclosure request\r\nMessage-ID: <m@example.jp>\r\n"
)


def test_arrival_time_comes_from_the_mailbox_then_received_then_date(rules: IntakeRules) -> None:
    received = b"Received: by mx; Fri, 20 Nov 2026 10:00:00 +0900\r\n"
    older = b"Received: by relay; Fri, 20 Nov 2026 09:00:00 +0900\r\n"
    date = b"Date: Thu, 19 Nov 2026 08:00:00 +0900\r\n"
    body = b"\r\nbody\r\n"
    mail = read(received + older + BASE + date + body, rules)
    assert (mail.received_at, mail.received_at_source) == (
        datetime(2026, 11, 20, 1, tzinfo=UTC),
        "received",
    )
    mail = read(BASE + date + body, rules)
    assert (mail.received_at, mail.received_at_source) == (NOW, "now"), "a Date 11 days old"
    recent = b"Date: Sun, 29 Nov 2026 08:00:00 +0900\r\n"
    mail = read(BASE + recent + body, rules)
    assert (mail.received_at, mail.received_at_source) == (
        datetime(2026, 11, 28, 23, tzinfo=UTC),
        "date",
    )
    internal = datetime(2026, 11, 21, tzinfo=UTC)
    mail = read(received + BASE + date + body, rules, received_at=internal)
    assert (mail.received_at, mail.received_at_source) == (internal, "internaldate")
    mail = read(BASE + body, rules)
    assert (mail.received_at, mail.received_at_source) == (NOW, "now")
    future = b"Date: Fri, 01 Jan 2027 00:00:00 +0900\r\n"
    mail = read(BASE + future + body, rules)
    assert (mail.received_at, mail.received_at_source) == (NOW, "now"), "never in the future"


def test_a_backdated_date_header_is_not_the_arrival(rules: IntakeRules) -> None:
    old = b"Date: Mon, 01 Jan 1990 00:00:00 +0900\r\n\r\nplease disclose\r\n"
    mail = read(BASE + old, rules)
    assert (mail.received_at, mail.received_at_source) == (NOW, "now")
    assert mail.date_header == datetime(1989, 12, 31, 15, tzinfo=UTC), "kept, not trusted"


def test_jst_is_nine_hours_ahead(rules: IntakeRules) -> None:
    jst = b"Date: Mon, 30 Nov 2026 10:00:00 JST\r\n\r\nbody\r\n"
    mail = read(BASE + jst, rules)
    assert mail.date_header == datetime(2026, 11, 30, 1, tzinfo=UTC)
    assert (mail.received_at, mail.received_at_source) == (mail.date_header, "date")
    received = b"Received: by mx; Mon, 30 Nov 2026 11:00:00 JST\r\n"
    mail = read(received + BASE + b"\r\nbody\r\n", rules)
    assert (mail.received_at, mail.received_at_source) == (
        datetime(2026, 11, 30, 2, tzinfo=UTC),
        "received",
    )


def test_text_is_clean_for_any_database(rules: IntakeRules) -> None:
    raw = (
        b"From: Ta\x00ro <taro@example.jp>\r\nSubject: =?UTF-8?B?6ZaL56S6AA==?= \x00x\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nabc\x00def \xed\xa0\x80\r\n"
    )
    mail = read(raw, rules)
    for value in (mail.subject, mail.text, mail.from_name):
        assert value is not None
        assert "\x00" not in value
        value.encode("utf-8")  # no lone surrogates
    assert mail.subject == "開示 x"
    assert mail.text.startswith("abcdef")


def test_attachment_limits(rules: IntakeRules) -> None:
    small = dataclasses.replace(
        rules,
        limits=rules.limits.model_copy(update={"max_attachment_bytes": 10, "max_attachments": 2}),
    )
    parts = b"".join(
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="' + name + b'"\r\n\r\n' + data + b"\r\n"
        for name, data in ((b"a.bin", b"12345"), (b"b.bin", b"x" * 50), (b"c.bin", b"67890"))
    )
    raw = BASE + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    mail = read(raw, small)
    files = [(a.filename, a.size, a.content) for a in mail.attachments]
    # Over the size limit: described, not kept; over the count: only counted.
    assert files == [("a.bin", 5, b"12345"), ("b.bin", 50, None)]
    assert mail.attachments_omitted == 1
    assert mail.attachment_count == 3
    assert all(len(a.sha256) == 64 for a in mail.attachments)


def test_part_limit(rules: IntakeRules, monkeypatch: pytest.MonkeyPatch) -> None:
    few = dataclasses.replace(rules, limits=rules.limits.model_copy(update={"max_parts": 3}))
    parts = b"".join(b"--b\r\nContent-Type: a/b\r\n\r\nx\r\n" for _ in range(4))
    raw = BASE + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    assert read(raw, rules).quarantine_reason is None
    for counted_on_the_bytes in (True, False):  # the count before parsing, and the walk
        if not counted_on_the_bytes:
            monkeypatch.setattr(
                "dsrflow.inbound_mail.reading.too_many_parts", lambda raw, limit: False
            )
        mail = read(raw, few)
        assert mail.quarantine_reason == "message has more than 3 MIME parts (the limit)"
        assert mail.attachments == ()
        assert mail.raw == raw
    # Lines that merely start with "--" are not parts.
    text = BASE + b"\r\n" + b"-- \r\nsignature\r\n" * 10
    assert read(text, few).quarantine_reason is None


def test_text_parts_are_decoded_only_as_far_as_they_are_kept(rules: IntakeRules) -> None:
    small = dataclasses.replace(rules, limits=rules.limits.model_copy(update={"max_text_chars": 5}))
    body = "開示請求\r\n".encode("iso2022_jp") * 50
    raw = BASE + b"Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n" + body
    mail = read(raw, small)
    assert mail.text.startswith("開示請求")
    assert "\ufffd" not in mail.text


def test_a_message_without_message_id_gets_a_stable_one(rules: IntakeRules) -> None:
    raw = b"From: taro@example.jp\r\nSubject: hi\r\n\r\nbody\r\n"
    first, second = read(raw, rules), read(raw, rules)
    assert first.message_id == second.message_id
    assert first.message_id.endswith("@no-message-id.invalid>")
    assert read(raw + b"x", rules).message_id != first.message_id


def test_own_mail_and_loops(rules: IntakeRules) -> None:
    own = {"info@innovativeai.co.jp"}
    mail = read(b"From: INFO@InnovativeAI.co.jp\r\nSubject: x\r\n\r\n", rules, own_addresses=own)
    assert mail.ignore_reason == "our own message (From is our address)"
    # A colleague's mail has a Message-ID of our domain too: it is not ours for that.
    mail = read(
        b"From: a@innovativeai.co.jp\r\nMessage-ID: <1@innovativeai.co.jp>\r\n\r\n",
        rules,
        own_addresses=own,
    )
    assert mail.ignore_reason is None
    for header in (b"Auto-Submitted: auto-generated", b"X-Autorespond: 1", b"Precedence: junk"):
        mail = read(
            b"From: a@example.jp\r\n" + header + b"\r\nSubject: delete my data\r\n\r\n", rules
        )
        assert mail.ignore_reason is not None, header
    mail = read(
        b"From: a@example.jp\r\nAuto-Submitted: no\r\nSubject: delete my data\r\n\r\n", rules
    )
    assert mail.ignore_reason is None
    mail = read(b"From: postmaster@example.jp\r\nSubject: x\r\n\r\n", rules)
    assert mail.ignore_reason == "bounce (sender postmaster)"


# --------------------------------------------------------------------------- the rules file


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mail.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_rules_load() -> None:
    loaded = load_rules(WORKFLOWS / "intake" / "mail.yaml", TYPES)
    assert {t for _, t in loaded.phrases} == set(TYPES)


def test_rule_errors_name_the_file_and_key(tmp_path: Path) -> None:
    limits = (
        "limits: {max_message_bytes: 1, max_attachment_bytes: 1, max_attachments: 1, "
        "max_text_chars: 1}\n"
    )
    path = rules_file(tmp_path, limits + "types: {disclosur: {ja: [開示]}}\nignore: {}\n")
    with pytest.raises(IntakeRulesError) as error:
        load_rules(path, TYPES)
    assert f"{path}: types.disclosur: unknown request type" in str(error.value)

    path = rules_file(tmp_path, "types: {}\nignore: {}\n")
    with pytest.raises(IntakeRulesError, match=rf"{path}: limits: Field required"):
        load_rules(path, TYPES)

    path = rules_file(tmp_path, limits + "types: {disclosure: {ja: ['']}}\nignore: {}\n")
    with pytest.raises(IntakeRulesError, match=r"types.disclosure.ja\[0\]: empty phrase"):
        load_rules(path, TYPES)

    path = rules_file(tmp_path, "types: [unclosed\n")
    with pytest.raises(IntakeRulesError, match="cannot be read as YAML"):
        load_rules(path, TYPES)

    with pytest.raises(IntakeRulesError, match="cannot be read"):
        load_rules(tmp_path / "missing.yaml", TYPES)


def test_rules_are_read_again_when_the_file_changes(tmp_path: Path) -> None:
    limits = (
        "limits: {max_message_bytes: 1, max_attachment_bytes: 1, max_attachments: 1, "
        "max_text_chars: 1}\nignore: {}\n"
    )
    path = rules_file(tmp_path, limits + "types: {disclosure: {en: [gimme]}}\n")
    assert detect_type("gimme", "", load_rules(path, TYPES))[0] == "disclosure"
    path.write_text(limits + "types: {correction: {en: [gimme]}}\n", encoding="utf-8")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1_000_000))
    assert detect_type("gimme", "", load_rules(path, TYPES))[0] == "correction"


def test_now_is_used_by_default(rules: IntakeRules) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    mail = read_message(b"From: a@example.jp\r\n\r\n", rules, source="file")
    assert mail.received_at >= before
