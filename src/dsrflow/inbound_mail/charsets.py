"""Decoding text whatever its label says: the charsets used in Japan (ISO-2022-JP with the
CP932 extensions that Windows mailers put in it, Shift_JIS read as CP932, EUC-JP, UTF-8) and
mislabelled or unlabelled text, guessed by how much it reads like Japanese."""

from __future__ import annotations

import re

_ISO2022JP = {
    "iso-2022-jp",
    "iso2022jp",
    "iso2022_jp",
    "csiso2022jp",
    "iso-2022-jp-1",
    "iso-2022-jp-2",
    "iso-2022-jp-3",
    "iso-2022-jp-2004",
    "iso-2022-jp-ms",
    "cp50220",
    "cp50221",
    "cp50222",
}
_SHIFT_JIS = {
    "shift_jis",
    "shift-jis",
    "sjis",
    "x-sjis",
    "s-jis",
    "ms_kanji",
    "csshiftjis",
    "windows-31j",
    "cp932",
    "ms932",
    "shift_jisx0213",
    "shift_jis-2004",
}
_EUC_JP = {
    "euc-jp",
    "eucjp",
    "euc_jp",
    "x-euc-jp",
    "cseucpkdfmtjapanese",
    "cp51932",
    "euc-jis-2004",
}
_UTF8 = {"utf-8", "utf8", "utf_8", "unicode-1-1-utf-8", "x-unicode20utf8"}
_UNKNOWN = {"", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "unknown", "default", "8bit"}
_WESTERN = re.compile(r"^(iso-?8859-\d+|latin-?\d|windows-125\d|cp125\d)$")
KANA = re.compile(r"[\u3041-\u309f\u30a1-\u30fa\u30fc]")
KANJI = re.compile(r"[\u4e00-\u9fff]")
_HALFWIDTH_KANA = re.compile(r"[\uff61-\uff9f]")
ODD = re.compile(r"[\ufffd\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
LATIN = re.compile(r"[A-Za-z]")
JAPANESE = re.compile(r"[\u3041-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text as labelled, and when the label is wrong or missing, as what it is."""
    if not data:
        return ""
    label = (charset or "").strip().strip('"').lower()
    seven_bit = data.isascii()
    if label in _ISO2022JP and seven_bit:
        return _strict(data, "iso2022_jp") or _iso2022jp_cp932(data, strict=False)
    if seven_bit and b"\x1b$" in data:  # ISO-2022-JP without (or with a wrong) label
        return _strict(data, "iso2022_jp") or _iso2022jp_cp932(data, strict=False)
    if label in _SHIFT_JIS:
        return _strict(data, "cp932") or _guess(data)
    if label in _EUC_JP:
        return _strict(data, "euc_jp") or _eucjp_cp932(data, strict=True) or _guess(data)
    if label in _UTF8:
        return _strict(data, "utf-8") or _guess(data)
    if seven_bit:
        return data.decode("ascii")
    if label in _UNKNOWN or label in _ISO2022JP:
        return _guess(data)
    declared = _strict(data, label)
    if declared is None:
        return _guess(data)
    if _WESTERN.match(label):
        # Japanese (or UTF-8) text sent out under a Western label is common; prefer what reads.
        guessed = _guess(data)
        if _strict(data, "utf-8") is not None or KANA.search(guessed):
            return guessed
    return declared


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None
    except Exception:  # a codec that fails in its own way
        return None


def _score(text: str) -> int:
    """How much ``text`` reads like Japanese (or plain) text; wrong decodings score low."""
    return (
        3 * len(KANA.findall(text))
        + len(KANJI.findall(text))
        - 3 * len(_HALFWIDTH_KANA.findall(text))
        - 5 * len(ODD.findall(text))
    )


def _guess(data: bytes) -> str:
    utf8 = _strict(data, "utf-8")
    if utf8 is not None:
        return utf8
    candidates = [
        text
        for text in (
            _strict(data, "cp932"),
            _strict(data, "euc_jp") or _eucjp_cp932(data, strict=True),
            _strict(data, "euc_jis_2004"),
        )
        if text is not None
    ]
    if candidates:
        return max(candidates, key=_score)
    return max(
        (data.decode("utf-8", "replace"), data.decode("cp932", "replace")),
        key=lambda t: -t.count("\ufffd"),
    )


def _jis_to_sjis(j1: int, j2: int) -> bytes:
    """A JIS X 0208 code (both bytes 0x21-0x7E) as Shift_JIS/CP932 bytes."""
    s1 = ((j1 - 0x21) >> 1) + 0x81
    if s1 > 0x9F:
        s1 += 0x40
    s2 = j2 + (0x1F + (1 if j2 >= 0x60 else 0) if j1 & 1 else 0x7E)
    return bytes((s1, s2))


def _iso2022jp_cp932(data: bytes, *, strict: bool) -> str:
    """ISO-2022-JP as Windows writes it (CP50220/50221): the JIS X 0208 set is CP932's, with
    NEC and IBM extensions (①, ㈱, …), and half-width katakana by ESC ( I or SO/SI."""
    out = bytearray()
    mode, shifted, i, bad = "ascii", False, 0, 0
    while i < len(data):
        byte = data[i]
        if byte == 0x1B:
            for seq, new_mode in _ESCAPES:
                if data.startswith(seq, i):
                    mode, i = new_mode, i + len(seq)
                    break
            else:
                bad += 1
                i += 1
            continue
        if byte in (0x0E, 0x0F):
            shifted, i = byte == 0x0E, i + 1
            continue
        if byte in (0x0A, 0x0D) or byte >= 0x80:
            out.append(byte if byte < 0x80 else 0x3F)
            bad += byte >= 0x80
            i += 1
            continue
        if shifted or mode == "kana":
            if 0x21 <= byte <= 0x5F:
                out.append(byte + 0x80)
            else:
                out.append(byte)
            i += 1
        elif mode == "jis":
            nxt = data[i + 1] if i + 1 < len(data) else 0
            if 0x21 <= byte <= 0x7E and 0x21 <= nxt <= 0x7E:
                out += _jis_to_sjis(byte, nxt)
                i += 2
            else:
                out.append(byte if byte in (0x20, 0x09) else 0x3F)
                bad += byte not in (0x20, 0x09)
                i += 1
        else:
            out.append(byte)
            i += 1
    text = out.decode("cp932", "replace")
    if strict and (bad or "\ufffd" in text):
        raise UnicodeDecodeError("iso-2022-jp", data, 0, len(data), "not CP50220 text")
    return text


_ESCAPES = (
    (b"\x1b&@\x1b$B", "jis"),
    (b"\x1b$(B", "jis"),
    (b"\x1b$(Q", "jis"),
    (b"\x1b$(O", "jis"),
    (b"\x1b$B", "jis"),
    (b"\x1b$@", "jis"),
    (b"\x1b(B", "ascii"),
    (b"\x1b(J", "ascii"),
    (b"\x1b(H", "ascii"),
    (b"\x1b(I", "kana"),
)


def _eucjp_cp932(data: bytes, *, strict: bool) -> str | None:
    """EUC-JP with the NEC extensions (CP51932), through the CP932 table."""
    out = bytearray()
    i, bad = 0, 0
    while i < len(data):
        byte = data[i]
        nxt = data[i + 1] if i + 1 < len(data) else 0
        if byte < 0x80:
            out.append(byte)
            i += 1
        elif byte == 0x8E and 0xA1 <= nxt <= 0xDF:
            out.append(nxt)
            i += 2
        elif 0xA1 <= byte <= 0xFE and 0xA1 <= nxt <= 0xFE:
            out += _jis_to_sjis(byte - 0x80, nxt - 0x80)
            i += 2
        else:  # JIS X 0212 (0x8F) has no CP932 form
            bad += 1
            out.append(0x3F)
            i += 3 if byte == 0x8F else 1
    text = out.decode("cp932", "replace")
    if strict and (bad or "\ufffd" in text):
        return None
    return text
