# ruff: noqa: E501  (the messages are data: long lines of mail text)
"""Write tests/inbound_mail/desk_corpus/: what a privacy desk's mailbox receives, and what must
become of each message (manifest.yaml).

Every message is written here by hand, in the formats of the programs that send them (Gmail,
Outlook, Thunderbird, iPhone, docomo/au/SoftBank mail, the bounce formats of Postfix, Exim,
qmail, sendmail, Exchange, Gmail, Yahoo and the Japanese carriers); none is copied from
elsewhere. Run it again after changing it: ``.venv/bin/python scripts/make_desk_corpus.py``.
The output is deterministic (no clock, no randomness), so a rerun changes nothing else.

The database the test reads them into holds the requests of ``SEEDS`` (key, type, state,
requester), each with an acknowledgment that went out as ``<ack-KEY@innovativeai.co.jp>``.
"""

from __future__ import annotations

import base64
import quopri
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parents[1] / "tests" / "inbound_mail" / "desk_corpus"
DESK = "info@innovativeai.co.jp"
OUR_MX = "mx.innovativeai.co.jp"

# key: (type, state, requester). The test makes them in this order: DSR-2026-000001 is A.
SEEDS: dict[str, tuple[str, str, str]] = {
    "A": ("disclosure", "awaiting_requester", "yamada.a@example.jp"),
    "B": ("suspension", "received", "b.sato@gmail.com"),
    "C": ("disclosure", "received", "c-tanaka@docomo.ne.jp"),
    "D": ("correction", "received", "d.suzuki@ezweb.ne.jp"),
    "E": ("suspension", "received", "e_kato@i.softbank.jp"),
    "F": ("purpose_notice", "received", "f.ito@yahoo.co.jp"),
    "G": ("disclosure", "received", "g.watanabe@outlook.jp"),
    "H": ("third_party_cessation", "received", "h.kobayashi@au.com"),
    "I": ("disclosure", "received", "ian.clarke@example.co.uk"),
    "J": ("suspension", "fulfilled", "j.nakamura@example.jp"),
}


def reference(key: str) -> str:
    return f"DSR-2026-{list(SEEDS).index(key) + 1:06d}"


def ack_id(key: str) -> str:
    return f"<ack-{key}@innovativeai.co.jp>"


# --------------------------------------------------------------------------- building mail


def encoded_word(text: str, charset: str = "utf-8") -> str:
    if text.isascii():
        return text
    if charset == "iso-2022-jp":
        data = text.encode("iso2022_jp_ext" if _all_jis(text) else "iso2022_jp_2")
    elif charset == "shift_jis":
        data = text.encode("cp932")
    else:
        data = text.encode("utf-8")
    return f"=?{charset}?B?{base64.b64encode(data).decode()}?="


def _all_jis(text: str) -> bool:
    try:
        text.encode("iso2022_jp_ext")
    except UnicodeEncodeError:
        return False
    return True


def address(name: str | None, addr: str, charset: str = "utf-8") -> str:
    return f"{encoded_word(name, charset)} <{addr}>" if name else addr


def body_bytes(text: str, charset: str) -> bytes:
    text = text.replace("\n", "\r\n")
    codec = {
        "iso-2022-jp": "iso2022_jp_ext",
        "shift_jis": "cp932",
        "euc-jp": "euc_jp",
        "utf-8": "utf-8",
        "us-ascii": "ascii",
        "gb2312": "gbk",
        "utf-16le": "utf-16-le",
    }[charset]
    if charset == "iso-2022-jp" and not _all_jis(text):
        return _cp50220(text)
    return text.encode(codec)


def _cp50220(text: str) -> bytes:
    """ISO-2022-JP as Windows writes it: CP932 characters (①, 髙) in JIS X 0208 codes."""
    out = bytearray()
    jis = False
    for char in text:
        if char.isascii():
            if jis:
                out += b"\x1b(B"
                jis = False
            out += char.encode()
            continue
        sjis = char.encode("cp932")
        s1, s2 = sjis
        if s1 >= 0xE0:
            s1 -= 0x40
        j1 = (s1 - 0x81) * 2 + 0x21
        if s2 >= 0x9F:
            j1, j2 = j1 + 1, s2 - 0x7E
        else:
            j2 = s2 - 0x1F - (1 if s2 >= 0x80 else 0)
        if not jis:
            out += b"\x1b$B"
            jis = True
        out += bytes((j1, j2))
    if jis:
        out += b"\x1b(B"
    return bytes(out)


def text_part(
    text: str, charset: str = "utf-8", cte: str = "8bit", subtype: str = "plain"
) -> bytes:
    data = body_bytes(text, charset)
    if cte == "base64":
        payload = base64.encodebytes(data).replace(b"\n", b"\r\n")
    elif cte == "quoted-printable":
        payload = quopri.encodestring(data).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    else:
        payload = data
    head = (
        f"Content-Type: text/{subtype}; charset={charset}\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    ).encode()
    return head + payload


def multipart(subtype: str, parts: list[bytes], boundary: str, extra: str = "") -> bytes:
    out = f'Content-Type: multipart/{subtype}; boundary="{boundary}"{extra}\r\n\r\n'.encode()
    out += b"This is a multi-part message in MIME format.\r\n"
    for part in parts:
        out += f"\r\n--{boundary}\r\n".encode() + part
    return out + f"\r\n--{boundary}--\r\n".encode()


def html_of(text: str) -> str:
    paragraphs = "".join(f"<div>{line or '<br>'}</div>" for line in text.split("\n"))
    return f"<html><body>{paragraphs}</body></html>"


@dataclass
class Mail:
    """One message: its headers and its content (bytes with their own Content-* headers)."""

    name: str
    expect: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)
    content: bytes = b""
    prefix: bytes = b""

    def render(self) -> bytes:
        head = "".join(f"{k}: {v}\r\n" for k, v in self.headers).encode("utf-8", "surrogateescape")
        return self.prefix + head + b"MIME-Version: 1.0\r\n" + self.content


CORPUS: list[Mail] = []
_day = [0]


def received(day: int, hour: int, minute: int, *, host: str = OUR_MX, year: int = 2026) -> str:
    return (
        f"from relay.example.net (relay.example.net [192.0.2.25])\r\n\tby {host} (Postfix) "
        f"with ESMTPS id {day:02d}{hour:02d}{minute:02d}\r\n\tfor <{DESK}>; "
        f"{day} Nov {year} {hour:02d}:{minute:02d}:00 +0900"
    )


def add(
    name: str,
    expect: dict[str, Any],
    *,
    sender: str,
    subject: str,
    content: bytes,
    subject_charset: str = "utf-8",
    extra: list[tuple[str, str]] | None = None,
    message_id: str | None = None,
    date: tuple[int, int, int] | None = None,
    prefix: bytes = b"",
    to: str = DESK,
    received_header: str | None = None,
    date_header: str | None = None,
) -> None:
    number = len(CORPUS) + 1
    day, hour, minute = date or (1 + number % 28, 9 + number % 9, number % 60)
    headers = [("Received", received_header or received(day, hour, minute))]
    headers += [
        ("From", sender),
        ("To", to),
        ("Subject", encoded_word(subject, subject_charset)),
        ("Date", date_header or f"{day} Nov 2026 {hour:02d}:{minute:02d}:00 +0900"),
        ("Message-ID", message_id or f"<desk-{number:03d}.{name}@mail.example.net>"),
    ]
    headers += extra or []
    CORPUS.append(Mail(f"{number:03d}_{name}.eml", expect, headers, content, prefix))


# --------------------------------------------------------------------------- styles


def gmail(text: str, lang: str = "ja") -> bytes:
    return multipart(
        "alternative",
        [text_part(text, "utf-8", "base64"), text_part(html_of(text), "utf-8", "base64", "html")],
        f"000000000000gm{len(CORPUS):04d}",
    )


def outlook(text: str, lang: str = "ja") -> bytes:
    if lang == "ja":
        plain = text_part(text, "iso-2022-jp", "7bit")
        html = text_part(html_of(text), "utf-8", "base64", "html")
    else:
        plain = text_part(text, "utf-8", "quoted-printable")
        html = text_part(html_of(text), "utf-8", "quoted-printable", "html")
    return multipart("alternative", [plain, html], f"_000_OS3PR01MB{len(CORPUS):04d}_")


def docomo(text: str) -> bytes:
    return text_part(text, "shift_jis", "8bit")


def au(text: str) -> bytes:
    return text_part(text, "iso-2022-jp", "7bit")


def softbank(text: str) -> bytes:  # iPhone mail on i.softbank.jp
    return text_part(text, "utf-8", "base64")


def thunderbird(text: str) -> bytes:
    head = b"Content-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    return head + text.replace("\n", "\r\n").encode("utf-8")


STYLES = {
    "gmail": gmail,
    "outlook": outlook,
    "docomo": docomo,
    "au": au,
    "softbank": softbank,
    "thunderbird": thunderbird,
}
MAILERS = {
    "gmail": [("X-Mailer", "Gmail")],
    "outlook": [("X-Mailer", "Microsoft Outlook 16.0"), ("Thread-Index", "AdsAbCdEfGh")],
    "docomo": [],
    "au": [("X-Mailer", "KDDI Mail")],
    "softbank": [("X-Mailer", "iPhone Mail (22B91)")],
    "thunderbird": [("User-Agent", "Mozilla Thunderbird")],
}
DOMAINS = {
    "gmail": "gmail.com",
    "outlook": "outlook.jp",
    "docomo": "docomo.ne.jp",
    "au": "au.com",
    "softbank": "i.softbank.jp",
    "thunderbird": "example.ne.jp",
}

# Japanese business mail: a signature between rule lines, and the confidentiality footer.
SIGNATURE_JA = """
━━━━━━━━━━━━━━━━━━━━
株式会社サンプル商事 営業部
{name}
〒100-0001 東京都千代田区千代田1-1
TEL: 03-1234-5678 / FAX: 03-1234-5679
Mail: {mail}
━━━━━━━━━━━━━━━━━━━━"""
DISCLAIMER_JA = """
本メールは機密情報を含む場合があります。本メールの宛先に誤りがある場合、または誤って受信された場合は、
お手数ですが送信者にご連絡いただくとともに、本メールを削除してください。"""
DISCLAIMER_JA_2 = """
※このメールにお心当たりのない方は、大変お手数ですが本メールを削除してください。
※本メールおよび添付ファイルの無断転載を禁じます。"""
SIGNATURE_EN = """
--
{name}
Sample Trading Ltd. | +81 3 1234 5678 | {mail}"""
DISCLAIMER_EN = """
CONFIDENTIALITY NOTICE: This e-mail and any attachments are confidential and may be privileged.
If you are not the intended recipient, please notify the sender immediately and erase this
e-mail. Any unauthorised copying or disclosure is prohibited."""
DISCLAIMER_EN_2 = """
This email and any attachments are intended solely for the addressee. If you have received this
email in error, please delete it and notify the sender. Any views expressed are those of the
author; correction of errors in transmission cannot be guaranteed."""


# --------------------------------------------------------------------------- requests


def requests() -> None:
    """Genuine requests: they must become requests of their type."""
    ja = [
        (
            "disclosure",
            "gmail",
            "山田 花子",
            "個人情報の開示請求",
            "お世話になっております。\n貴社に登録されている私の個人情報の開示を請求いたします。\n会員番号: 12345678\n\nよろしくお願いいたします。\n山田 花子",
        ),
        (
            "disclosure",
            "outlook",
            "高田 誠",
            "保有個人データの開示について",
            "ご担当者様\n\n貴社が保有している私の保有個人データを開示してください。\n開示方法は電子メールを希望します。\n\n高田 誠",
        ),
        (
            "disclosure",
            "docomo",
            None,
            "",
            "私の個人情報を見せてください。どんな情報を持っているのか知りたいです。",
        ),
        ("disclosure", "thunderbird", "木村 健", "開示請求", "木村です。\nよろしくお願いします。"),
        (
            "disclosure",
            "outlook",
            "森 由美",
            "個人情報開示のお願い",
            "ご担当者様\n\nいつもお世話になっております。森と申します。\n貴社が保有する私の個人データの開示をお願いいたします。\n登録メールアドレスは本メールの送信元です。\n"
            + SIGNATURE_JA.format(name="森 由美", mail="mori@example.co.jp")
            + "\n"
            + DISCLAIMER_JA,
        ),
        (
            "disclosure",
            "docomo",
            None,
            "情報開示",
            "登録情報を開示してほしいです。よろしくお願いします。",
        ),
        ("disclosure", "au", None, "開示のお願い", "私の個人情報の開示をお願いします"),
        (
            "disclosure",
            "softbank",
            "Ken",
            "",
            "貴社が持っている私のデータを開示してください。\n\niPhoneから送信",
        ),
        ("suspension", "docomo", None, "退会について", "退会したので個人情報を消してください"),
        (
            "suspension",
            "gmail",
            "斉藤 愛",
            "利用停止のお願い",
            "ご担当者様\n\n私の個人情報の利用を停止してください。\n今後、広告メールも不要です。\n\n斉藤 愛",
        ),
        (
            "suspension",
            "outlook",
            "石井 亮",
            "個人情報の削除依頼",
            "お世話になります。\n先月貴社のサービスを退会しました。\n登録されている個人情報をすべて削除してください。\n"
            + SIGNATURE_JA.format(name="石井 亮", mail="ishii@example.co.jp")
            + DISCLAIMER_JA_2,
        ),
        (
            "suspension",
            "thunderbird",
            "前田 晴",
            "ダイレクトメールの送付停止と個人情報の消去",
            "今後DMを送らないでください。\n私の個人データを消去してください。\n\n前田",
        ),
        ("suspension", "au", None, "", "アカウントを削除して、個人情報も消去してください"),
        (
            "suspension",
            "softbank",
            None,
            "個人情報",
            "個人情報を削除してもらえますか。もう使っていないので。\n\niPhoneから送信",
        ),
        (
            "correction",
            "gmail",
            "岡田 翔",
            "登録情報の訂正のお願い",
            "引っ越しをしたので、登録されている住所を訂正してください。\n新住所: 東京都世田谷区1-2-3\n\n岡田 翔",
        ),
        (
            "correction",
            "gmail",
            "髙橋 一郎",
            "個人情報の訂正請求",
            "氏名の漢字に誤りがあります。「高橋」ではなく「髙橋」です。\n①氏名 ②フリガナ の訂正をお願いします。\n\n髙橋 一郎",
        ),
        (
            "correction",
            "docomo",
            None,
            "",
            "電話番号が変わったので登録内容を直してください。新しい番号は090-1111-2222です。",
        ),
        (
            "correction",
            "thunderbird",
            "松本 恵",
            "訂正、追加又は削除の請求",
            "貴社が保有する私の個人データについて、内容の訂正、追加又は削除を請求します。\n誤っている項目: 生年月日\n\n松本 恵",
        ),
        (
            "third_party_cessation",
            "gmail",
            "林 大輔",
            "第三者提供の停止について",
            "私の個人データの第三者提供を停止してください。\n\n林 大輔",
        ),
        (
            "third_party_cessation",
            "outlook",
            "清水 香",
            "提携会社への情報提供について",
            "提携会社に私の情報を渡すのをやめてください。\n第三者への提供を停止してください。\n\n清水 香",
        ),
        ("third_party_cessation", "au", None, "", "私の個人情報を第三者に提供しないでください"),
        (
            "third_party_record_disclosure",
            "thunderbird",
            "山口 拓",
            "第三者提供記録の開示請求",
            "私の個人データを第三者に提供した記録（第三者提供記録）の開示を請求します。\n\n山口 拓",
        ),
        (
            "third_party_record_disclosure",
            "docomo",
            None,
            "",
            "私の情報をどこの会社に提供したか、第三者提供の記録を見せてください。",
        ),
        (
            "purpose_notice",
            "gmail",
            "中島 彩",
            "利用目的の通知のお願い",
            "私の個人情報の利用目的を教えてください。\n\n中島 彩",
        ),
        (
            "purpose_notice",
            "softbank",
            None,
            "",
            "集めた個人情報を何に使っているのか利用目的を知りたいです。",
        ),
    ]
    for n, (rtype, style, name, subject, text) in enumerate(ja, 1):
        addr = f"req-ja{n:02d}@{DOMAINS[style]}"
        charset = "iso-2022-jp" if style in ("outlook", "au", "docomo") else "utf-8"
        add(
            f"request_ja_{rtype}_{style}",
            {"status": "created", "type": rtype, "language": "ja"},
            sender=address(name, addr, charset),
            subject=subject,
            subject_charset=charset,
            content=STYLES[style](text),
            extra=MAILERS[style],
        )
    en = [
        (
            "disclosure",
            "gmail",
            "Emily Clarke",
            "Subject access request",
            "Hello,\n\nI am writing to request a copy of my personal data that you hold, under the APPI.\nPlease send it by e-mail.\n\nKind regards,\nEmily Clarke",
        ),
        (
            "disclosure",
            "outlook",
            "Mark Owen",
            "Request for disclosure of my personal data",
            "Dear Sir or Madam,\n\nPlease disclose the personal data you retain about me.\n"
            + SIGNATURE_EN.format(name="Mark Owen", mail="m.owen@example.co.uk")
            + "\n"
            + DISCLAIMER_EN,
        ),
        (
            "disclosure",
            "thunderbird",
            "Anna Berg",
            "Data access request",
            "Hi,\n\nI would like access to my personal data held by your company.\n\nAnna",
        ),
        (
            "disclosure",
            "softbank",
            None,
            "My data",
            "Could you please send me a copy of my personal data? Thanks\n\nSent from my iPhone",
        ),
        (
            "suspension",
            "gmail",
            "Liam Ng",
            "Delete my account",
            "Please delete my account and all personal data you have about me.\n\nLiam",
        ),
        (
            "suspension",
            "thunderbird",
            "Sofia Rossi",
            "Right to be forgotten",
            "Hello,\nI am exercising my right to be forgotten. Remove everything you have on me.\nSofia",
        ),
        (
            "suspension",
            "outlook",
            "David Kim",
            "Marketing",
            "Stop using my personal data for marketing, please.\n"
            + SIGNATURE_EN.format(name="David Kim", mail="dkim@example.com")
            + "\n"
            + DISCLAIMER_EN_2,
        ),
        (
            "suspension",
            "gmail",
            "Grace Lee",
            "Closed account",
            "I closed my account last month. Please erase my personal information.\n\nGrace",
        ),
        (
            "correction",
            "gmail",
            "Tom Baker",
            "Wrong address",
            "Hi, please correct my address in your records. The new one is 1-2-3 Shibuya, Tokyo.\n\nTom",
        ),
        (
            "correction",
            "outlook",
            "Olivia Park",
            "Rectification of inaccurate personal data",
            "I request rectification of inaccurate personal data: my date of birth is 1990-04-01.\n"
            + SIGNATURE_EN.format(name="Olivia Park", mail="opark@example.com"),
        ),
        (
            "correction",
            "thunderbird",
            "Noah Sato",
            "Misspelled name",
            "Your records have my name misspelled (Noa instead of Noah). Please make the correction.\n\nNoah Sato",
        ),
        (
            "third_party_cessation",
            "gmail",
            "Mia Wong",
            "Third parties",
            "Please stop sharing my personal data with third parties.\n\nMia Wong",
        ),
        (
            "third_party_cessation",
            "softbank",
            None,
            "Opt out",
            "I want to opt out of third-party sharing of my data.\n\nSent from my iPhone",
        ),
        (
            "third_party_record_disclosure",
            "outlook",
            "Lucas Meyer",
            "Records of third party provision",
            "Please provide the records of third party provision of my personal data.\n\nLucas Meyer",
        ),
        (
            "third_party_record_disclosure",
            "thunderbird",
            "Ella Novak",
            "Third party records request",
            "I request the third party records concerning my personal data.\n\nElla",
        ),
        (
            "purpose_notice",
            "gmail",
            "Jack Ford",
            "Purpose of use",
            "What is the purpose of use of my personal data? Please tell me.\n\nJack",
        ),
        (
            "purpose_notice",
            "outlook",
            "Chloe Martin",
            "Question",
            "Please notify me of the purpose for which you use my data.\n\nChloe Martin",
        ),
    ]
    for n, (rtype, style, name, subject, text) in enumerate(en, 1):
        add(
            f"request_en_{rtype}_{style}",
            {"status": "created", "type": rtype, "language": "en"},
            sender=address(name, f"req-en{n:02d}@{DOMAINS[style].replace('.jp', '.com')}"),
            subject=subject,
            content=STYLES[style](text, "en")
            if style in ("gmail", "outlook")
            else STYLES[style](text),
            extra=MAILERS[style],
        )
    special_requests()


def special_requests() -> None:
    """Requests in the forms that lost their sender or their words before."""
    # A reply chain: the sender's own words ask for erasure; the quoted answer names 開示.
    add(
        "request_ja_suspension_reply_with_quote",
        {"status": "created", "type": "suspension", "not_text_matters": True},
        sender=address("小林 誠", "makoto.k@gmail.com"),
        subject="Re: お問い合わせの件",
        content=gmail(
            "ご回答ありがとうございます。\nやはり私の個人情報を削除してください。\n\n"
            "2026年11月20日(金) 10:00 サポート窓口 <support@innovativeai.co.jp>:\n\n"
            "> お問い合わせありがとうございます。\n> 個人情報の開示、訂正については所定の様式でご請求ください。\n"
        ),
    )
    # Outlook reply with a quoted header block below.
    add(
        "request_en_disclosure_outlook_reply_block",
        {"status": "created", "type": "disclosure"},
        sender=address("Ryan Cole", "ryan.cole@outlook.com"),
        subject="RE: Your newsletter",
        content=outlook(
            "Please send me a copy of the personal data you hold about me.\n\nRyan\n\n"
            "________________________________\nFrom: Sample News <news@example.com>\n"
            "Sent: Monday, November 23, 2026 10:00 AM\nTo: Ryan Cole\nSubject: Your newsletter\n\n"
            "To stop receiving these, reply and we will delete your subscription.",
            "en",
        ),
    )
    # From: Name addr@domain, without angle brackets.
    add(
        "request_ja_suspension_from_without_brackets",
        {
            "status": "created",
            "type": "suspension",
            "from": "hanako.s@example.ne.jp",
            "from_name": "佐藤花子",
        },
        sender="=?utf-8?B?"
        + base64.b64encode("佐藤花子".encode()).decode()
        + "?= hanako.s@example.ne.jp",
        subject="利用停止のお願い",
        content=thunderbird("私の個人情報の利用停止をお願いします。"),
    )
    # A UTF-8 address (RFC 6532), written raw.
    add(
        "request_ja_disclosure_utf8_address",
        {"status": "created", "type": "disclosure", "from": "山田@例え.jp"},
        sender="山田 <山田@例え.jp>".encode().decode("ascii", "surrogateescape"),
        subject="開示請求",
        content=thunderbird("私の個人データの開示を請求します。"),
        extra=[("Content-Language", "ja")],
    )
    # A message that starts with a byte-order mark.
    add(
        "request_ja_disclosure_bom",
        {"status": "created", "type": "disclosure"},
        sender="bom.user@example.jp",
        subject="開示請求",
        content=thunderbird("保有個人データの開示を請求します。"),
        prefix=b"\xef\xbb\xbf",
    )
    # An ASCII-only part in UTF-16.
    add(
        "request_en_suspension_utf16_part",
        {"status": "created", "type": "suspension", "text": ["delete my personal data"]},
        sender="utf16.user@example.com",
        subject="Request",
        content=text_part("Please delete my personal data.\n", "utf-16le", "base64"),
    )
    # Half-width katakana in Shift_JIS (old docomo handsets).
    add(
        "request_ja_suspension_halfwidth_kana",
        {"status": "created", "type": "suspension"},
        sender="kana.user@docomo.ne.jp",
        subject="",
        content=docomo("ｱｶｳﾝﾄの情報を削除してください"),
    )
    # EUC-JP from an old Unix mailer.
    add(
        "request_ja_purpose_notice_eucjp",
        {"status": "created", "type": "purpose_notice"},
        sender="euc.user@example.ac.jp",
        subject="利用目的について",
        content=text_part("私の個人情報の利用目的を教えて下さい。\n", "euc-jp", "8bit"),
    )
    # An au message with pictograms written as ISO-2022-JP codes no table has.
    pictogram = b"\x1b$B\x75\x41\x1b(B"
    body = _cp50220("退会しました。個人情報を削除してください") + pictogram + b"\r\n"
    add(
        "request_ja_suspension_au_pictogram",
        {"status": "created", "type": "suspension", "text": ["個人情報を削除してください〓"]},
        sender="picto.user@ezweb.ne.jp",
        subject="退会",
        subject_charset="iso-2022-jp",
        content=b"Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        + body,
    )
    # A request in Japanese with an English signature block and both disclaimers.
    add(
        "request_ja_third_party_cessation_bilingual_footer",
        {"status": "created", "type": "third_party_cessation"},
        sender=address("大野 剛", "ohno@example.co.jp"),
        subject="第三者提供の停止",
        content=outlook(
            "ご担当者様\n\n私の個人データを第三者に提供するのをやめてください。\n"
            + SIGNATURE_JA.format(name="大野 剛", mail="ohno@example.co.jp")
            + "\n"
            + DISCLAIMER_JA
            + "\n"
            + DISCLAIMER_EN
        ),
    )


# --------------------------------------------------------------------------- replies


def replies() -> None:
    a, b = SEEDS["A"][2], SEEDS["B"][2]
    add(
        "reply_ja_subject_reference",
        {"status": "joined", "joins": "A", "notifies": True},
        sender=address("山田 A", a),
        subject=f"Re: [{reference('A')}] ご本人確認のお願い",
        content=gmail("対象のサービス名はサンプルポイントです。\nよろしくお願いします。"),
    )
    add(
        "reply_en_in_reply_to_ack",
        {"status": "joined", "joins": "B"},
        sender=b,
        subject="Re: Acknowledgment",
        content=gmail("Thank you. I look forward to hearing from you.", "en"),
        extra=[("In-Reply-To", ack_id("B")), ("References", ack_id("B"))],
    )
    add(
        "reply_ja_references_only",
        {"status": "joined", "joins": "C"},
        sender=SEEDS["C"][2],
        subject="Re: 受付のお知らせ",
        content=docomo("了解しました。"),
        extra=[("References", f"<x@example.jp> {ack_id('C')}")],
    )
    add(
        "reply_ja_text_reference_from_requester",
        {"status": "joined", "joins": "D"},
        sender=SEEDS["D"][2],
        subject="お世話になります",
        content=au(f"受付番号{reference('D')}の件、訂正後の住所は大阪市北区1-1です。"),
    )
    add(
        "reply_ja_closed_request_triage",
        {"status": "triage", "joins": "J", "reason": "closed"},
        sender=SEEDS["J"][2],
        subject=f"Re: [{reference('J')}] 対応完了のお知らせ",
        content=gmail("ありがとうございました。もう一つ、別の情報も削除してほしいです。"),
    )
    add(
        "reply_ja_text_reference_stranger_triage",
        {"status": "triage", "reason": "not its requester"},
        sender="stranger@example.org",
        subject="問い合わせ",
        content=thunderbird(f"{reference('E')}について、代理で問い合わせます。"),
    )
    add(
        "reply_en_two_requests_triage",
        {"status": "triage", "reason": "several requests"},
        sender=SEEDS["I"][2],
        subject=f"Re: [{reference('I')}] and [{reference('G')}]",
        content=gmail("Which of these is mine?", "en"),
    )
    add(
        "reply_en_requester_with_signature",
        {"status": "joined", "joins": "I"},
        sender=address("Ian Clarke", SEEDS["I"][2]),
        subject=f"Re: [{reference('I')}] Acknowledgment",
        content=outlook(
            "Thanks, noted.\n" + SIGNATURE_EN.format(name="Ian Clarke", mail=SEEDS["I"][2]), "en"
        ),
    )


# --------------------------------------------------------------------------- bounces


def original(key: str, *, with_id: bool = True, quote: str = "") -> str:
    lines = [
        "Return-Path: <info@innovativeai.co.jp>",
        "From: info@innovativeai.co.jp",
        f"To: {SEEDS[key][2]}",
        f"Subject: [{reference(key)}] =?utf-8?B?5Y+X5LuY44Gu44GK55+l44KJ44Gb?=",
        "Date: Mon, 02 Nov 2026 10:00:00 +0900",
    ]
    if with_id:
        lines.append(f"Message-ID: {ack_id(key)}")
    text = "\n".join(f"{quote}{line}" for line in lines)
    return text + f"\n\n{quote}Your request {reference(key)} has been received.\n"


def report(
    human: str,
    key: str,
    recipient: str,
    status: str,
    diagnostic: str,
    mta: str,
    *,
    headers_only: bool = False,
    charset: str = "us-ascii",
) -> bytes:
    dsn = (
        f"Reporting-MTA: dns; {mta}\r\nArrival-Date: Mon, 2 Nov 2026 10:00:05 +0900\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
    ).encode()
    returned = original(key).replace("\n", "\r\n").encode()
    parts = [
        text_part(human, charset, "8bit" if charset != "us-ascii" else "7bit"),
        b"Content-Type: message/delivery-status\r\n\r\n" + dsn,
        (b"Content-Type: text/rfc822-headers\r\n\r\n" + returned.split(b"\r\n\r\n")[0] + b"\r\n")
        if headers_only
        else b"Content-Type: message/rfc822\r\n\r\n" + returned,
    ]
    return multipart("report", parts, f"bounce-{len(CORPUS):04d}", "; report-type=delivery-status")


def bounces() -> None:
    """Bounces of our letters, in the formats of the main MTAs and the Japanese carriers."""

    def expect(key: str | None) -> dict[str, Any]:
        if key is None:
            return {"status": "ignored", "reason": "bounce"}
        return {"status": "ignored", "reason": "bounce", "joins": key, "bounce_of": key}

    formats = []

    def postfix(key: str) -> None:
        rcpt = SEEDS[key][2]
        add(
            f"bounce_postfix_dsn_{key}",
            expect(key),
            sender=address("Mail Delivery System", f"MAILER-DAEMON@{OUR_MX}"),
            subject="Undelivered Mail Returned to Sender",
            content=report(
                f"This is the mail system at host {OUR_MX}.\n\nI'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n<{rcpt}>: host mx.example.net said: 550 5.1.1 User unknown\n",
                key,
                rcpt,
                "5.1.1",
                "550 5.1.1 <user> User unknown",
                OUR_MX,
            ),
            extra=[("Auto-Submitted", "auto-replied")],
        )

    formats.append(postfix)

    def gmail_dsn(key: str) -> None:
        rcpt = SEEDS[key][2]
        add(
            f"bounce_gmail_dsn_{key}",
            expect(key),
            sender=address("Mail Delivery Subsystem", "mailer-daemon@googlemail.com"),
            subject="Delivery Status Notification (Failure)",
            content=report(
                f"** Address not found **\n\nYour message wasn't delivered to {rcpt} because the address couldn't be found, or is unable to receive mail.\n",
                key,
                rcpt,
                "5.1.1",
                "550-5.1.1 The email account that you tried to reach does not exist.",
                "mx.google.com",
            ),
        )

    formats.append(gmail_dsn)

    def gmail_plain(key: str) -> None:
        rcpt = SEEDS[key][2]
        add(
            f"bounce_gmail_plain_{key}",
            expect(key),
            sender=address("Mail Delivery Subsystem", "mailer-daemon@googlemail.com"),
            subject="Delivery Status Notification (Failure)",
            content=text_part(
                f"** Address not found **\n\nYour message wasn't delivered to {rcpt} because the address couldn't be found.\n\nThe response was:\n\n550 5.1.1 The email account that you tried to reach does not exist.\n\n----- Original message -----\n\n"
                + original(key),
                "utf-8",
                "quoted-printable",
            ),
        )

    formats.append(gmail_plain)

    def exim(key: str) -> None:
        rcpt = SEEDS[key][2]
        add(
            f"bounce_exim_{key}",
            expect(key),
            sender=address("Mail Delivery System", "Mailer-Daemon@mail.example.net"),
            subject="Mail delivery failed: returning message to sender",
            content=text_part(
                f"This message was created automatically by mail delivery software.\n\nA message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n  {rcpt}\n    mailbox is full\n\n------ This is a copy of the message, including all the headers. ------\n\n"
                + original(key),
                "us-ascii",
                "7bit",
            ),
            extra=[("X-Failed-Recipients", rcpt), ("Auto-Submitted", "auto-replied")],
        )

    formats.append(exim)

    def qmail(key: str) -> None:
        rcpt = SEEDS[key][2]
        add(
            f"bounce_qmail_{key}",
            expect(key),
            sender="MAILER-DAEMON@mail.example.org",
            subject="failure notice",
            content=text_part(
                f"Hi. This is the qmail-send program at mail.example.org.\nI'm afraid I wasn't able to deliver your message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n<{rcpt}>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n--- Below this line is a copy of the message.\n\n"
                + original(key),
                "us-ascii",
                "7bit",
            ),
        )

    formats.append(qmail)

    def yahoo(key: str) -> None:
        rcpt = SEEDS[key][2]
        add(
            f"bounce_yahoo_{key}",
            expect(key),
            sender="MAILER-DAEMON@yahoo.co.jp",
            subject="Failure Notice",
            content=text_part(
                f"Sorry, we were unable to deliver your message to the following address.\n\n<{rcpt}>:\nRemote host said: 550 5.1.1 recipient rejected\n\n--- Below this line is a copy of the message.\n\n"
                + original(key),
                "us-ascii",
                "7bit",
            ),
        )

    formats.append(yahoo)

    def exchange(key: str) -> None:
        rcpt = SEEDS[key][2]
        add(
            f"bounce_exchange_{key}",
            expect(key),
            sender=address("Microsoft Outlook", "postmaster@contoso.onmicrosoft.com"),
            subject=f"配信不能: [{reference(key)}] 受付のお知らせ",
            content=report(
                f"次の受信者またはグループへの配信に失敗しました:\n\n{rcpt}\n宛先のメールアドレスが見つかりません。\n",
                key,
                rcpt,
                "5.1.10",
                "550 5.1.10 RESOLVER.ADR.RecipientNotFound",
                "contoso.onmicrosoft.com",
                charset="utf-8",
            ),
        )

    formats.append(exchange)

    def exchange_en(key: str) -> None:
        rcpt = SEEDS[key][2]
        add(
            f"bounce_exchange_en_{key}",
            expect(key),
            sender=address("Microsoft Outlook", "postmaster@outlook.com"),
            subject="Undeliverable: Acknowledgment",
            content=report(
                f"Delivery has failed to these recipients or groups:\n\n{rcpt}\nThe email address you entered couldn't be found.\n",
                key,
                rcpt,
                "5.1.1",
                "550 5.1.1 RESOLVER.ADR.RecipNotFound",
                "outlook.com",
                headers_only=True,
            ),
        )

    formats.append(exchange_en)

    def docomo_bounce(key: str) -> None:
        rcpt = SEEDS[key][2]
        add(
            f"bounce_docomo_sendmail_{key}",
            expect(key),
            sender=address("Mail Delivery Subsystem", "MAILER-DAEMON@docomo.ne.jp"),
            subject="Returned mail: see transcript for details",
            content=report(
                f"The original message was received at Mon, 2 Nov 2026 10:00:05 +0900\nfrom mx.innovativeai.co.jp\n\n   ----- The following addresses had permanent fatal errors -----\n<{rcpt}>\n    (reason: 550 Unknown user)\n",
                key,
                rcpt,
                "5.0.0",
                "550 Unknown user",
                "docomo.ne.jp",
                headers_only=True,
            ),
        )

    formats.append(docomo_bounce)

    def kddi(key: str, sender: str) -> None:
        rcpt = SEEDS[key][2]
        text = (
            f"送信されたメールは、以下の理由により宛先に届きませんでした。\n\n宛先: {rcpt}\n理由: 宛先のメールアドレスが見つかりません\n\n"
            "------ 元のメールのヘッダ ------\n" + original(key)
        )
        add(
            f"bounce_kddi_{key}_{len(CORPUS)}",
            expect(key),
            sender=sender,
            subject="メールエラー通知",
            subject_charset="iso-2022-jp",
            content=au(text),
        )

    def softbank_bounce(key: str) -> None:
        rcpt = SEEDS[key][2]
        add(
            f"bounce_softbank_{key}",
            expect(key),
            sender=address("Mail Delivery System", "MAILER-DAEMON@softbank.ne.jp"),
            subject="Undelivered Mail Returned to Sender",
            content=report(
                f"This is the mail system at host softbank.ne.jp.\n\n<{rcpt}>: user unknown\n",
                key,
                rcpt,
                "5.1.1",
                "550 5.1.1 user unknown",
                "softbank.ne.jp",
            ),
        )

    formats.append(softbank_bounce)

    letters = ["C", "D", "E", "F", "G", "H", "I", "B"]
    for n, key in enumerate(letters):
        for k in range(5):
            formats[(n * 5 + k) % len(formats)](key)
    # The Japanese carriers' notice, from the senders that lost it before.
    for key, sender in (
        ("D", "MAILER-DAEMON <>"),
        ("H", "<>"),
        ("E", "MAILER-DAEMON"),
        ("C", "postmaster@ezweb.ne.jp"),
        ("H", "MAILER-DAEMON <>"),
    ):
        kddi(key, sender)
    # A Japanese MTA that writes the returned message's header straight after the boundary.
    for key in ("G", "C"):
        rcpt = SEEDS[key][2]
        human = text_part(
            "The original message was received at Mon, 2 Nov 2026 10:00:05 +0900\n"
            f"from {DESK}\n\n---The following addresses had delivery errors---\n\n{rcpt} [User unknown]\n",
            "iso-2022-jp",
            "7bit",
        )
        returned = original(key).replace("\n", "\r\n").encode()
        add(
            f"bounce_japanese_mta_bare_part_{key}",
            expect(key),
            sender=address("Mail Deliver System", "MAILER-DAEMON@mail.example.co.jp"),
            subject="Returned Mail: User unknown",
            content=multipart("mixed", [human, returned], f"---fff{len(CORPUS):06d}"),
        )
    # au/KDDI (auone-net.jp): from a no-reply address, the original attached.
    for key in ("D", "H"):
        rcpt = SEEDS[key][2]
        human = text_part(
            f"Your mail sent on: Mon, 2 Nov 2026 10:00:00 +0900\n     Could not be delivered to: <{rcpt}>\n     As their mailbox is full.\n",
            "iso-2022-jp",
            "7bit",
        )
        attached = (
            b"Content-Type: message/rfc822\r\n\r\n" + original(key).replace("\n", "\r\n").encode()
        )
        add(
            f"bounce_kddi_auone_{key}",
            expect(key),
            sender="no-reply@00000000000000.dion.ne.jp",
            subject="Mail",
            content=multipart("mixed", [human, attached], f"==_0xAA/{len(CORPUS):04d}=/0xB"),
            extra=[("Return-Path", "<>")],
        )
    # A bounce that quotes only the body of our letter: linked by the reference.
    for key in ("F", "A"):
        add(
            f"bounce_reference_only_{key}",
            expect(key),
            sender="MAILER-DAEMON@mta.example.ne.jp",
            subject="Returned mail",
            content=text_part(
                "Your message could not be delivered: user unknown.\n\n--- Below this line is a copy of the message.\n\n"
                f"{reference(key)} のご請求を受け付けました。\n",
                "utf-8",
                "8bit",
            ),
        )
    # Bounces of mail that is not ours: ignored, linked to nothing, nobody told.
    for n, fmt in enumerate(("exim", "qmail", "gmail")):
        add(
            f"bounce_not_ours_{fmt}",
            expect(None),
            sender="MAILER-DAEMON@mail.example.net",
            subject="Mail delivery failed",
            content=text_part(
                f"This message was created automatically by mail delivery software.\n\n------ This is a copy of the message ------\n\nFrom: colleague@innovativeai.co.jp\nMessage-ID: <colleague-{n}@innovativeai.co.jp>\nSubject: 会議の件\n\n明日の会議資料です。\n",
                "utf-8",
                "8bit",
            ),
        )


# --------------------------------------------------------------------------- automatic mail


def auto_replies() -> None:
    cases = [
        (
            "auto_submitted_ja",
            [("Auto-Submitted", "auto-replied")],
            "Re: 受付のお知らせ",
            "ただいま不在にしております。12月3日に戻ります。",
            "auto-reply",
        ),
        (
            "auto_submitted_en",
            [("Auto-Submitted", "auto-generated")],
            "Your message",
            "I am away until Monday with limited access to e-mail.",
            "auto-reply",
        ),
        ("x_autoreply", [("X-Autoreply", "yes")], "Re: お知らせ", "自動応答です。", "auto-reply"),
        (
            "x_autorespond",
            [("X-Autorespond", "1")],
            "Thanks for your mail",
            "Thank you for contacting us. We will reply within 2 business days.",
            "auto-reply",
        ),
        (
            "precedence_auto_reply",
            [("Precedence", "auto_reply")],
            "Re: [info]",
            "This is an automatic reply.",
            "auto_reply",
        ),
        (
            "subject_fuzai",
            [],
            "不在のお知らせ",
            "12月1日から12月5日まで不在です。個人情報に関するご依頼は後日対応します。",
            "auto-reply",
        ),
        (
            "subject_out_of_office",
            [],
            "Out of Office: Request",
            "I am out of the office. For data deletion requests, please wait.",
            "auto-reply",
        ),
        (
            "subject_automatic_reply",
            [("X-Auto-Response-Suppress", "All")],
            "Automatic reply: Acknowledgment",
            "I'm on leave until 7 December.",
            "auto-reply",
        ),
        (
            "subject_jidou_henshin",
            [],
            "【自動返信】お問い合わせありがとうございます",
            "お問い合わせを受け付けました。個人情報の削除を含むご依頼は担当者より回答いたします。",
            "auto-reply",
        ),
        (
            "subject_jidou_outou",
            [],
            "自動応答：ご連絡ありがとうございます",
            "このメールは自動応答です。",
            "auto-reply",
        ),
        (
            "helpdesk_ticket",
            [("Auto-Submitted", "auto-replied"), ("X-Autoreply", "yes")],
            "[Ticket #48213] Re: Request received",
            "Your ticket has been created. Please do not reply.",
            "auto-reply",
        ),
        (
            "fuzai_with_reference",
            [],
            f"不在のお知らせ Re: [{reference('E')}]",
            f"不在にしております。\n> {reference('E')} のご請求を受け付けました。",
            "auto-reply",
        ),
        (
            "ooo_quoting_letter",
            [("Auto-Submitted", "auto-replied")],
            "Out of office",
            f"I am away.\n\n> Your request {reference('I')} has been received. We will disclose your data.",
            "auto-reply",
        ),
        ("vacation_ja_mobile", [("Precedence", "junk")], "Re:", "ただいま休暇中です", "Precedence"),
        (
            "autoreply_header_ja",
            [("X-Auto-Reply", "yes")],
            "Re: 開示請求の受付",
            "自動返信: 担当者不在",
            "auto-reply",
        ),
        (
            "autoreply_en_no_headers",
            [],
            "Auto-Reply: Your request",
            "Thank you for your email. I will respond when I return.",
            "auto-reply",
        ),
        (
            "autoreply_ja_outlook",
            [],
            "自動返信: 受付のお知らせ",
            "出張中のため返信が遅れます。",
            "auto-reply",
        ),
        (
            "autoreply_en_automatic_response",
            [],
            "Automatic response",
            "Your message has been received.",
            "auto-reply",
        ),
        (
            "autoreply_ja_fuzaichuu",
            [],
            "【不在中】ご連絡ありがとうございます",
            "12月は不在中です。",
            "auto-reply",
        ),
        (
            "autoreply_x_autoreply_from",
            [("X-AutoReply-From", "sales@example.co.jp")],
            "Re: お問い合わせ",
            "担当者より折り返しご連絡いたします。",
            "auto-reply",
        ),
    ]
    for name, headers, subject, text, reason in cases:
        expect: dict[str, Any] = {"status": "ignored", "reason": reason}
        for key in ("E", "I"):
            if reference(key) in subject + text:
                expect["joins"] = key
        add(
            f"autoreply_{name}",
            expect,
            sender=f"{name.replace('_', '.')}@example.co.jp",
            subject=subject,
            content=thunderbird(text),
            extra=headers,
        )


def newsletters() -> None:
    lists: list[tuple[str, list[tuple[str, str]], str, str]] = [
        (
            "list_unsubscribe_correction",
            [("List-Unsubscribe", "<https://mag.example.jp/u?id=1>")],
            "【訂正とお詫び】先日配信したメールマガジンの内容について",
            "先日配信したメールマガジンに誤りがありました。訂正してお詫び申し上げます。\n会員情報の変更はマイページから。",
        ),
        (
            "privacy_policy_update",
            [("List-Id", "<news.example.jp>")],
            "個人情報保護方針改定のお知らせ",
            "個人情報の利用目的を改定しました。開示、訂正、利用停止等のご請求は窓口まで。",
        ),
        (
            "precedence_bulk",
            [("Precedence", "bulk")],
            "【週刊】ニュースダイジェスト",
            "今週のニュースをお届けします。",
        ),
        (
            "sendgrid",
            [("X-SG-EID", "abc123")],
            "Black Friday: 50% off",
            "Shop now. Delete this email if not interested.",
        ),
        (
            "mailgun",
            [("X-Mailgun-Sid", "WyI0"), ("List-Unsubscribe", "<mailto:u@mg.example.com>")],
            "Your weekly digest",
            "Here are the updates to your account settings and personal data controls.",
        ),
        (
            "mailchimp",
            [("X-MC-User", "a1b2c3")],
            "November newsletter",
            "Our purpose of use statement changed.",
        ),
        (
            "list_id_ml",
            [("List-Id", "users.ml.example.org"), ("List-Post", "<mailto:users@ml.example.org>")],
            "[users:01234] 個人情報の削除について",
            "MLの皆さま、退会者の個人情報の削除手順を共有します。",
        ),
        (
            "melmaga_sender",
            [],
            "メルマガ Vol.120",
            "配信停止はこちら https://example.jp/stop\n個人情報の取り扱いについて",
        ),
        ("news_sender", [], "お知らせ：サービス利用規約の改定", "利用規約を改定しました。"),
        (
            "noreply_sender",
            [],
            "【重要】会員情報の確認",
            "会員情報をご確認ください。このメールアドレスは送信専用です。",
        ),
        (
            "magazine_sender",
            [],
            "Weekly magazine",
            "Read our stories. To opt out of third party sharing visit settings.",
        ),
        (
            "marketing_sender",
            [],
            "Exclusive invitation",
            "Join our seminar on personal data protection.",
        ),
        (
            "mailchimp_domain",
            [],
            "Holiday specials",
            "Update your preferences or delete your profile.",
        ),
        (
            "cuenote",
            [("X-Cuenote-ID", "77")],
            "【キャンペーン】ポイント2倍",
            "期間中はポイント2倍！",
        ),
        (
            "list_help",
            [("List-Help", "<mailto:help@example.jp>")],
            "ユーザー会のお知らせ",
            "次回の勉強会のお知らせです。",
        ),
        (
            "list_unsubscribe_en_correction",
            [("List-Unsubscribe", "<https://example.com/u>")],
            "Correction: yesterday's issue",
            "We made an error in yesterday's issue. Correction below.",
        ),
        (
            "bulk_precedence_list",
            [("Precedence", "list")],
            "[community] Weekly summary",
            "Summary of the week.",
        ),
        ("campaign_header", [("X-Campaign", "winter-2026")], "冬のセール", "冬のセール開催中。"),
        (
            "do_not_reply",
            [],
            "ご注文ありがとうございます",
            "ご注文を承りました。登録情報の変更はマイページから。",
        ),
        ("promotion_sender", [], "【期間限定】特別クーポン", "クーポンをお届けします。"),
    ]
    senders = {
        "melmaga_sender": "melmaga@shop.example.jp",
        "news_sender": "news@service.example.jp",
        "noreply_sender": "noreply@service.example.jp",
        "magazine_sender": "magazine@stories.example.com",
        "marketing_sender": "marketing@events.example.com",
        "mailchimp_domain": "store@store.mcsv.net",
        "do_not_reply": "do-not-reply@shop.example.jp",
        "promotion_sender": "promotion@shop.example.jp",
    }
    for name, headers, subject, text in lists:
        add(
            f"newsletter_{name}",
            {"status": "ignored"},
            sender=address("Sample Shop", senders.get(name, "info@shop.example.jp")),
            subject=subject,
            content=gmail(text),
            extra=headers,
        )


def business() -> None:
    """Colleagues' and partners' mail: never a request, whatever its footer says."""
    ja = [
        (
            "auditor_kessan",
            "Re: 決算短信の開示について",
            "監査法人の佐藤です。\n決算短信の開示スケジュールについて承知しました。\n開示前に最終版をお送りください。",
        ),
        (
            "quotation_correction",
            "見積書訂正版の送付",
            "先日の見積書に誤りがありましたので、訂正版をお送りします。",
        ),
        (
            "missent_delete",
            "先ほどのメールについて",
            "先ほどのメールは誤送信です。お手数ですが削除してください。",
        ),
        ("meeting_materials", "会議資料の件", "会議資料をお送りします。ご確認ください。"),
        ("invoice", "請求書送付のご案内", "11月分の請求書をお送りします。ご査収ください。"),
        ("disclosure_materials", "開示資料のご送付", "株主総会の開示資料をお送りします。"),
        (
            "file_delete_request",
            "共有フォルダの整理",
            "古いファイルを削除してください。容量が不足しています。",
        ),
        ("contract_review", "契約書レビューのお願い", "契約書の第5条の訂正案をご確認ください。"),
        (
            "recruiting",
            "採用面接の日程",
            "面接の日程調整をお願いします。履歴書は削除せず保管ください。",
        ),
        ("privacy_training", "個人情報保護研修のご案内", "来週、個人情報保護研修を実施します。"),
        ("vendor_notice", "システムメンテナンスのお知らせ", "12月5日にメンテナンスを行います。"),
        ("order_change", "発注内容の変更", "発注数を100から120に修正してください。"),
    ]
    for n, (name, subject, text) in enumerate(ja):
        footer = [DISCLAIMER_JA, DISCLAIMER_JA_2, DISCLAIMER_JA + DISCLAIMER_EN][n % 3]
        body = (
            "○○株式会社\nご担当者様\n\nいつもお世話になっております。\n"
            + text
            + "\n"
            + SIGNATURE_JA.format(name="田中", mail="tanaka@partner.co.jp")
            + "\n"
            + footer
        )
        add(
            f"business_ja_{name}",
            {"status": "triage"},
            sender=address("田中 太郎", f"tanaka{n}@partner.co.jp", "iso-2022-jp"),
            subject=subject,
            subject_charset="iso-2022-jp",
            content=outlook(body),
        )
    en = [
        ("erase_this_email", "Project update", "Please find the project update attached."),
        (
            "corrected_invoice",
            "Corrected invoice",
            "Please find attached the corrected invoice for October.",
        ),
        (
            "duplicate_file",
            "Shared drive",
            "Could you delete the duplicate file from the shared drive?",
        ),
        ("copy_of_contract", "Contract", "Could you send me a copy of the signed contract?"),
        ("access_room", "Meeting room", "I need access to the meeting room on Friday."),
        ("disclose_results", "Results", "We will disclose the quarterly results next week."),
        (
            "quoted_chain",
            "RE: Schedule",
            "Works for me.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\nSubject: Schedule\n\nPlease delete my earlier invite and stop using the old room.",
        ),
        (
            "vendor_security",
            "Security review",
            "Our security review covers how personal data is stored.",
        ),
    ]
    for n, (name, subject, text) in enumerate(en):
        footer = [DISCLAIMER_EN, DISCLAIMER_EN_2][n % 2]
        body = (
            "Hi team,\n\n"
            + text
            + "\n"
            + SIGNATURE_EN.format(name="Bob Smith", mail="bob@partner.com")
            + "\n"
            + footer
        )
        add(
            f"business_en_{name}",
            {"status": "triage"},
            sender=address("Bob Smith", f"bob{n}@partner.com"),
            subject=subject,
            content=outlook(body, "en"),
        )
    # A Chinese partner's mail labelled gb2312 (with GBK characters): read, and triaged.
    add(
        "business_zh_gb2312",
        {"status": "triage", "text": ["們的報價單"]},
        sender="li.wei@example.cn",
        subject="报价单",
        content=text_part("您好，附件是我們的報價單。\n", "gb2312", "base64"),
    )
    # A colleague's disclosure-sounding mail quoting a forwarded request: forwarded.
    add(
        "business_ja_forwarded_block",
        {"status": "triage", "reason": "forwarded"},
        sender="colleague.b@partner.co.jp",
        subject="ご参考",
        content=gmail(
            "ご参考まで。\n\n---------- Forwarded message ---------\nFrom: 顧客 <c@example.jp>\n個人情報を削除してください。"
        ),
    )


def ir_and_ads() -> None:
    cases = [
        (
            "ir_tekiji",
            "ir-info@ir.example.co.jp",
            "【適時開示】業績予想の修正に関するお知らせ",
            "当社は本日、業績予想の修正を開示いたしました。",
            {},
        ),
        (
            "ir_tekiji_no_list",
            "kabu.news@example.co.jp",
            "【適時開示】自己株式の取得に関するお知らせ",
            "適時開示情報をお知らせします。",
            {},
        ),
        (
            "ir_kessan",
            "ir@example-holdings.co.jp",
            "決算説明会のご案内",
            "決算説明会を開催します。",
            {},
        ),
        (
            "ir_en",
            "investor.relations@example.com",
            "Q3 earnings release",
            "We will disclose Q3 results on 10 December.",
            {},
        ),
        ("ad_sale", "sale@shop.example.jp", "【期間限定】50%OFFセール", "今だけ全品50%OFF！", {}),
        (
            "ad_seminar",
            "seminar@consult.example.jp",
            "無料セミナーのご案内：改正個人情報保護法への対応",
            "改正法の開示請求・利用停止請求への対応を解説します。",
            {},
        ),
        (
            "ad_en_offer",
            "deals@offers.example.com",
            "Exclusive offer just for you",
            "Erase your debt today! Click here.",
            {},
        ),
        (
            "ad_seo",
            "sales@seo.example.com",
            "Increase your traffic",
            "We can correct your website ranking.",
            {},
        ),
        (
            "ad_ja_real_estate",
            "fudosan@example.jp",
            "投資用マンションのご案内",
            "節税対策に。資料を送付します。",
            {},
        ),
        (
            "ad_ja_recruit",
            "hr@agent.example.jp",
            "【人材紹介】エンジニアのご紹介",
            "優秀なエンジニアをご紹介します。",
            {},
        ),
        (
            "ad_list",
            "shop@example.jp",
            "【セール】年末大感謝祭",
            "年末セール開催。",
            {"List-Unsubscribe": "<https://shop.example.jp/u>"},
        ),
        (
            "ad_en_list",
            "news@brand.example.com",
            "New arrivals",
            "Check out new arrivals.",
            {"List-Id": "<brand.example.com>"},
        ),
        (
            "ad_ja_webinar",
            "event@example-saas.jp",
            "ウェビナー：データ削除の自動化",
            "データ削除を自動化する方法を紹介します。",
            {},
        ),
    ]
    for name, sender, subject, text, headers in cases:
        expect: dict[str, Any] = {
            "status": "ignored"
            if headers or name == "ir_tekiji" or name == "ir_kessan"
            else "triage"
        }
        add(
            f"ir_ad_{name}",
            expect,
            sender=sender,
            subject=subject,
            content=gmail(text),
            extra=list(headers.items()),
        )
    # Stock spam from a forged relay, dated 2005: never overdue on arrival.
    add(
        "spam_stock_2005",
        {"status": "triage", "received_at_source": "now"},
        sender="Stock Alert <alert@stocks.example.biz>",
        subject="This stock will EXPLODE",
        content=text_part(
            "Buy ZXQI now! To stop these messages, reply with DELETE.\n", "us-ascii", "7bit"
        ),
        date_header="Mon, 3 Jan 2005 10:00:00 -0500",
        received_header="from unknown (HELO spam.example.biz) by spam.example.biz with SMTP; Mon, 3 Jan 2005 10:00:00 -0500",
    )
    add(
        "spam_stock_2005_japanese",
        {"status": "triage", "received_at_source": "now"},
        sender="株式情報 <kabu@stocks.example.biz>".encode().decode("ascii", "surrogateescape"),
        subject="急騰銘柄のお知らせ",
        content=text_part(
            "今すぐ購入を。配信を止めるには削除と返信してください。\n", "utf-8", "8bit"
        ),
        date_header="Tue, 4 Jan 2005 01:00:00 +0900",
        received_header="from unknown by mail.example.biz; Tue, 4 Jan 2005 01:00:00 +0900",
    )


def phishing() -> None:
    cases = [
        (
            "riyou_teishi",
            "【重要】ご利用停止のお知らせ",
            "お客様のアカウントは利用停止となりました。以下より登録情報を確認してください。",
        ),
        (
            "account_lock",
            "アカウントがロックされました",
            "不正なアクセスを検知したため、アカウントをロックしました。個人情報を更新してください。",
        ),
        (
            "payment_update",
            "【Amazon】お支払い方法の更新のお願い",
            "お支払い方法を更新してください。更新されない場合、アカウントを削除します。",
        ),
        (
            "fusei_login",
            "不正ログインの検知について",
            "普段と異なる場所からのログインがありました。",
        ),
        (
            "card_limit",
            "カードのご利用制限のお知らせ",
            "カードの利用を停止しています。本人確認をお願いします。",
        ),
        (
            "bank",
            "口座の一時停止に関するご連絡",
            "口座の利用を停止しました。個人情報の確認をお願いします。",
        ),
        (
            "apple",
            "Apple IDのアカウント情報の確認が必要です",
            "アカウント情報を確認しないと削除されます。",
        ),
        ("password", "パスワードの再設定のお願い", "パスワードの有効期限が切れます。"),
        (
            "en_suspended",
            "Your account has been suspended",
            "We suspended your account. Verify your personal data to restore it.",
        ),
        (
            "en_verify",
            "Verify your account now",
            "Please verify your account or it will be deleted.",
        ),
        (
            "en_unusual",
            "Unusual sign-in activity",
            "We detected unusual sign-in activity. Stop using your account until you confirm.",
        ),
        (
            "en_action",
            "Action required: update your payment information",
            "Update your billing details to avoid deletion of your data.",
        ),
        (
            "en_mailbox",
            "Your mailbox storage is full - account will be disabled",
            "Confirm your account to keep using it.",
        ),
        (
            "ja_service_stop",
            "【重要】サービスご利用停止について",
            "ご利用を停止いたしました。個人情報の削除を防ぐにはログインしてください。",
        ),
        ("ja_security", "セキュリティ警告：不審なアクセス", "不審なアクセスがありました。"),
    ]
    for n, (name, subject, text) in enumerate(cases):
        add(
            f"phishing_{name}",
            {"status": "triage", "reason": "phishing"},
            sender=address("Support", f"support{n}@secure-{n}.example.top"),
            subject=subject,
            content=gmail(text),
        )


def doubtful() -> None:
    """Mail about personal data that is not one request: it waits for a handler."""
    cases = [
        (
            "fwd_request",
            "Fwd: 開示請求",
            "転送します。\n\n---------- Forwarded message ---------\n開示を請求します。",
            "forwarded",
        ),
        ("tensou_request", "転送: 利用停止のお願い", "利用停止をお願いします。", "forwarded"),
        (
            "two_types_ja",
            "お願い",
            "私の個人情報を開示して、誤りがあれば訂正してください。",
            "several",
        ),
        (
            "two_types_en",
            "Requests",
            "Please send me a copy of my personal data and delete my account afterwards.",
            "several",
        ),
        (
            "question_ja",
            "個人情報の取り扱いについて",
            "個人情報の取り扱いについて質問があります。お電話いただけますか。",
            "no request type",
        ),
        (
            "question_en",
            "Question about your privacy policy",
            "How do you protect my personal information?",
            "no request type",
        ),
        ("taikai", "退会方法", "退会方法を教えてください。", "no request type"),
        ("weak_no_context_ja", "削除の件", "先日の件、削除をお願いします。", "personal data"),
        (
            "weak_no_context_en",
            "Correction",
            "There is a correction needed on page 3.",
            "personal data",
        ),
        ("empty_body", "", "", "no request type"),
        (
            "unknown_reference",
            "Re: [DSR-2026-000999] 受付",
            "よろしくお願いします。",
            "unknown reference",
        ),
    ]
    for n, (name, subject, text, reason) in enumerate(cases):
        add(
            f"doubtful_{name}",
            {"status": "triage", "reason": reason},
            sender=f"person{n}@example.ne.jp",
            subject=subject,
            content=thunderbird(text),
        )


def write() -> None:
    requests()
    replies()
    bounces()
    auto_replies()
    newsletters()
    business()
    ir_and_ads()
    phishing()
    doubtful()
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.eml"):
        old.unlink()
    manifest: dict[str, Any] = {}
    for mail in CORPUS:
        (OUT / mail.name).write_bytes(mail.render())
        manifest[mail.name] = {k: v for k, v in mail.expect.items() if k != "not_text_matters"}
    header = (
        "# The privacy desk corpus: written by scripts/make_desk_corpus.py (do not edit by hand).\n"
        "# status: what must become of the message; type: the request type created; joins: the\n"
        "# seeded request it is linked to; bounce_of: the seeded request whose acknowledgment it\n"
        "# returns (its handlers are told once); reason: a part of the reason recorded.\n"
    )
    seeds = yaml.safe_dump({"seeds": {k: list(v) for k, v in SEEDS.items()}}, allow_unicode=True)
    body = yaml.safe_dump({"messages": manifest}, allow_unicode=True, sort_keys=True)
    (OUT / "manifest.yaml").write_text(header + seeds + body, encoding="utf-8")
    print(f"{len(CORPUS)} messages in {OUT}")


if __name__ == "__main__":
    write()
