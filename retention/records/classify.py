"""Sensitivity classifier for chat messages: does a message hold customer personal data?

``classify(text)`` returns a :class:`Classification` with a ``level`` (0 low, 1 medium,
2 high — the same values as ``retention.models.Sensitivity``) and the sorted names of the
rules that fired. The level is the highest level among the rules that fired.

HIGH rules
    ``mobile``            Mainland mobile number: 11 digits ``1[3-9]…``, optionally ``+86`` /
                          ``86`` / ``0086`` prefixed and split by spaces or hyphens
                          (``138 0013 8000``). Never matched inside a longer digit run.
    ``id_card``           Resident ID number: 17 digits + digit/X, a real birth date
                          (1900–2099) and a correct ISO 7064 MOD 11-2 check digit.
    ``bank_card``         16–19 digits (contiguous, or groups of four split by one kind of
                          separator) passing the Luhn check and starting with a card-issuer
                          prefix (2221–2720, 3, 4, 5, 6, 81, 9). The prefix check keeps
                          date-based order numbers such as ``2026112512345678`` — which
                          happens to pass Luhn — from counting. Numbers that are a valid ID
                          number, or that follow an order-number label, are not cards.
    ``email``             E-mail address.
    ``address``           Postal address: an administrative unit (省/市/区/县/州/旗) followed
                          closely by a road (路/街/道/巷/弄/段/胡同/大道…) with a house
                          number (``文三路 398 号``), or by a building/room number
                          (``3 栋``, ``2 单元``, ``301 室``, ``5 号楼``).
    ``payment_password``  A password / verification code *with its value*:
                          ``支付密码是 123456``, ``验证码：482913``,
                          ``payment password is 1234``. The value must contain a digit, so
                          advice (``请勿向任何人透露密码``) and questions (``忘记密码怎么办``)
                          do not fire.

MEDIUM rules
    ``order_number``      A label (订单号/订单编号/订单/order no./order number/order id)
                          followed by an id containing a digit.
    ``masked_mobile``     A masked mobile number such as ``138****8000``.
    ``im_handle``         A WeChat / QQ id after a label: ``微信号：zhangsan_88``,
                          ``QQ 12345678``. After a bare ``微信``/``vx``/``wx`` the id must
                          contain a digit, ``_`` or ``-`` so ordinary words do not fire.

Everything else is LOW with no reasons.

Full-width digits, letters and ``＠＋－＊`` are folded to ASCII before matching. The module
is built for bulk use (the demo-data generator classifies a million messages): every
pattern is compiled once at import, and digit-based rules are skipped when the message
does not contain enough digits for them to match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["HIGH", "LOW", "MEDIUM", "RULE_LEVELS", "Classification", "classify"]

# Same values as retention.models.Sensitivity (not imported here, to avoid import cycles).
LOW, MEDIUM, HIGH = 0, 1, 2

RULE_LEVELS: dict[str, int] = {
    "mobile": HIGH,
    "id_card": HIGH,
    "bank_card": HIGH,
    "email": HIGH,
    "address": HIGH,
    "payment_password": HIGH,
    "order_number": MEDIUM,
    "masked_mobile": MEDIUM,
    "im_handle": MEDIUM,
}


@dataclass(frozen=True, slots=True)
class Classification:
    level: int
    reasons: tuple[str, ...] = ()


_LOW_RESULT = Classification(LOW, ())

# --------------------------------------------------------------------------- normalisation

# Full-width ASCII variants people type on Chinese keyboards, plus the ideographic space.
_FULLWIDTH = (
    "\u3000０１２３４５６７８９＠＋－＊．＿"
    + "".join(chr(c) for c in range(0xFF21, 0xFF3B))
    + "".join(chr(c) for c in range(0xFF41, 0xFF5B))
)
_HALFWIDTH = (
    " 0123456789@+-*._"
    + "".join(chr(c) for c in range(0x41, 0x5B))
    + "".join(chr(c) for c in range(0x61, 0x7B))
)
_FOLD_TABLE = str.maketrans(_FULLWIDTH, _HALFWIDTH)
_NEEDS_FOLD = re.compile("[" + re.escape(_FULLWIDTH) + "]")

# At least N ASCII digits anywhere in the text (cheap gate for the digit rules).
_DIGIT = re.compile(r"[0-9]")
_HAS_7_DIGITS = re.compile(r"[0-9](?:[^0-9]*+[0-9]){6}")
_HAS_11_DIGITS = re.compile(r"[0-9](?:[^0-9]*+[0-9]){10}")

# --------------------------------------------------------------------------- HIGH patterns

_MOBILE = re.compile(
    r"(?<![0-9])(?<![0-9]-)"
    r"(?:(?:\+|00)?86[ -]?|[(（](?:\+|00)?86[)）][ -]?)?"
    r"1[3-9][0-9](?:[ -]?[0-9]{4}){2}"
    r"(?![0-9])(?!-[0-9])"
)

_ID_CARD = re.compile(
    r"(?<![0-9])"
    r"([1-9][0-9]{5}) ?((?:19|20)[0-9]{2})(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01]) ?"
    r"([0-9]{3}[0-9Xx])"
    r"(?![0-9A-Za-z])"
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_BANK_CARD = re.compile(
    r"(?<![0-9])"
    r"(?:[0-9]{16,19}(?![0-9])"
    r"|(?<![0-9][ -])[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?:\1[0-9]{1,3})?"
    r"(?![ -]?[0-9]))"
)
_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)

_ADDRESS_HINT = re.compile(r"[号栋幢室弄]|单元")
_ADDRESS = re.compile(
    # administrative unit, then a short run without punctuation …
    r"[省市区县州旗][\u4e00-\u9fffA-Za-z0-9 ]{0,16}?"
    r"(?:"
    # … a road with a house number: 文三路 398 号, 张江路88弄, 人民南路四段 12 号
    r"(?:大道|大街|胡同|路|街|巷|弄|段|(?<![知味频难报渠轨])道) ?[0-9]{1,5} ?[号弄]"
    # … or a building / unit / room number: 2 幢, 3 单元, 301 室, 5 号楼
    r"|[0-9]{1,5} ?(?:号楼|栋|幢|单元|室)"
    r")"
)

# A secret value: 4–32 characters with at least one digit, not a quantity (6 位, 60 秒).
_SECRET_VALUE = (
    r"(?=[A-Za-z!@#$%^&*_]*[0-9])[A-Za-z0-9!@#$%^&*_]{4,32}"
    r"(?![A-Za-z0-9.\-])(?! ?(?:位|个|次|秒|分钟|小时|天|元|块))"
)
_PAYMENT_PASSWORD = re.compile(
    r"(?:"
    r"(?:密码|口令|验证码|校验码|动态码)"
    r" ?(?:(?:是|为|就是|改成了?|改为|设为|设成|设置为|设置成) ?)?(?:[:：=] ?)?"
    r"|(?<![A-Za-z])(?:password|passcode|passwd|pwd|pin(?: ?code)?|verification ?code"
    r"|otp|sms ?code|security ?code)(?![A-Za-z])"
    r" ?(?:(?:is|was) ?)?(?:[:=] ?)?"
    r")" + _SECRET_VALUE,
    re.IGNORECASE,
)

_SECRET_HINT_EN = re.compile(
    r"[Pp](?:[Aa][Ss][Ss]|[Ww][Dd]|[Ii][Nn])|[Oo][Tt][Pp]|[Cc][Oo][Dd][Ee]"
)

# --------------------------------------------------------------------------- MEDIUM patterns

_LABEL_SEP = r" ?(?:(?:是|为) ?)?(?:[:：#] ?)?"

_ORDER_NUMBER = re.compile(
    r"(?:订单编号|订单号码?|订单ID|订单"
    r"|(?<![A-Za-z])order ?(?:no\.?|number|num|id|#)?)"
    + _LABEL_SEP
    + r"([A-Za-z]{0,6}[0-9][0-9A-Za-z-]{5,39})(?![0-9A-Za-z])",
    re.IGNORECASE,
)

_MASKED_MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9][ -]?(?:\*{4}|[xX]{4})[ -]?[0-9]{4}(?![0-9])")

_IM_ID = r"(?:[A-Za-z][A-Za-z0-9_-]{5,19}|[1-9][0-9]{4,11})(?![A-Za-z0-9_-])"
_IM_HANDLE = re.compile(
    # explicit labels: any plausible WeChat id / number
    r"(?:微信号|微信ID|(?<![A-Za-z])(?:wechat|weixin) ?id)"
    + _LABEL_SEP
    + _IM_ID
    # bare labels: the id must look like an id (digit, _ or -), not a word
    + r"|(?:微信|(?<![A-Za-z])(?:vx|wx|wechat|weixin)(?![A-Za-z]))"
    + _LABEL_SEP
    + r"(?=[A-Za-z]*[0-9_-])"
    + _IM_ID
    # QQ numbers
    + r"|(?<![A-Za-z])qq(?:号码?)?"
    + _LABEL_SEP
    + r"[1-9][0-9]{4,11}(?![0-9])",
    re.IGNORECASE,
)
# Case-sensitive spellings of the labels: much cheaper to scan for than IGNORECASE patterns.
_IM_HINT = re.compile(r"微信|[VvWw][Xx]|[Qq][Qq]|[Ww][Ee](?:[Cc][Hh][Aa][Tt]|[Ii][Xx][Ii][Nn])")

# --------------------------------------------------------------------------- validators


def _valid_id_card(match: re.Match[str]) -> bool:
    region, year_s, month_s, day_s, tail = match.groups()
    year, month, day = int(year_s), int(month_s), int(day_s)
    if not 1900 <= year <= 2099:
        return False
    limit = _DAYS_IN_MONTH[month]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        limit = 29
    if day > limit:
        return False
    body = region + year_s + month_s + day_s + tail[:3]
    total = sum(int(ch) * w for ch, w in zip(body, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == tail[3].upper()


def _luhn_ok(digits: str) -> bool:
    total = 0
    double = False
    for ch in reversed(digits):
        d = ord(ch) - 48
        total += _LUHN_DOUBLED[d] if double else d
        double = not double
    return total % 10 == 0


def _plausible_card_prefix(digits: str) -> bool:
    first = digits[0]
    if first in "34569":
        return True
    if first == "8":
        return digits[1] == "1"  # UnionPay 81xx
    if first == "2":
        return "2221" <= digits[:4] <= "2720"  # Mastercard 2-series
    return False


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(start < s_end and s_start < end for s_start, s_end in spans)


# --------------------------------------------------------------------------- entry point


def classify(text: str) -> Classification:
    """Classify one message; see the module docstring for the rules."""
    if not text:
        return _LOW_RESULT
    if _NEEDS_FOLD.search(text):
        text = text.translate(_FOLD_TABLE)

    found: set[str] = set()

    if "@" in text and _EMAIL.search(text):
        found.add("email")

    if _DIGIT.search(text):
        if ("码" in text or "令" in text or _SECRET_HINT_EN.search(text)) and (
            _PAYMENT_PASSWORD.search(text)
        ):
            found.add("payment_password")
        if _ADDRESS_HINT.search(text) and _ADDRESS.search(text):
            found.add("address")

        order_spans: list[tuple[int, int]] = [m.span(1) for m in _ORDER_NUMBER.finditer(text)]
        if order_spans:
            found.add("order_number")

        if _HAS_7_DIGITS.search(text):
            if _MASKED_MOBILE.search(text):
                found.add("masked_mobile")
            if _HAS_11_DIGITS.search(text):
                _long_number_rules(text, order_spans, found)

    if _IM_HINT.search(text) and _IM_HANDLE.search(text):
        found.add("im_handle")

    if not found:
        return _LOW_RESULT
    return Classification(max(RULE_LEVELS[r] for r in found), tuple(sorted(found)))


def _long_number_rules(text: str, order_spans: list[tuple[int, int]], found: set[str]) -> None:
    """ID-card, bank-card and mobile rules (the text has at least 11 digits)."""
    claimed: list[tuple[int, int]] = []
    for m in _ID_CARD.finditer(text):
        if _valid_id_card(m):
            found.add("id_card")
            claimed.append(m.span())
    for m in _BANK_CARD.finditer(text):
        start, end = m.span()
        if _overlaps(start, end, claimed) or _overlaps(start, end, order_spans):
            continue
        digits = m.group().replace(" ", "").replace("-", "")
        if digits.count(digits[0]) == len(digits):
            continue  # 0000 0000 0000 0000 is a placeholder, not a card
        if _plausible_card_prefix(digits) and _luhn_ok(digits):
            found.add("bank_card")
            claimed.append((start, end))
    for m in _MOBILE.finditer(text):
        if not _overlaps(*m.span(), claimed):
            found.add("mobile")
            break
