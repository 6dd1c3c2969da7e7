"""Sensitivity classifier: each rule's true and false positives, mixes, and the interface."""

from __future__ import annotations

import dataclasses

import pytest

from retention.records.classify import HIGH, LOW, MEDIUM, RULE_LEVELS, Classification, classify

# --------------------------------------------------------------------------- helpers

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check_digit(body17: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits of an ID number."""
    assert len(body17) == 17 and body17.isdigit()
    return "10X98765432"[sum(int(d) * w for d, w in zip(body17, ID_WEIGHTS, strict=True)) % 11]


def with_id_check(body17: str) -> str:
    return body17 + id_check_digit(body17)


def wrong_id_check(body17: str) -> str:
    """The 17 digits followed by a check character that is NOT the right one."""
    right = id_check_digit(body17)
    return body17 + ("0" if right != "0" else "1")


def luhn_sum(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10


def with_luhn(partial: str) -> str:
    """Append the Luhn check digit."""
    return partial + str((10 - luhn_sum(partial + "0")) % 10)


def break_luhn(number: str) -> str:
    """Change the last digit so the number no longer passes Luhn."""
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def grouped(number: str, sep: str = " ") -> str:
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def reasons(text: str) -> tuple[str, ...]:
    return classify(text).reasons


# Sanity-check the helpers against well-known values rather than trusting them blindly.
WELL_KNOWN_ID = "11010519491231002X"
WELL_KNOWN_CARD = "4111111111111111"  # the classic Visa test number
CARD_16 = with_luhn("622202020000123")
CARD_19 = with_luhn("621700123456789012")
assert with_id_check(WELL_KNOWN_ID[:17]) == WELL_KNOWN_ID
assert luhn_sum(WELL_KNOWN_CARD) == 0
assert luhn_sum(CARD_16) == 0 and len(CARD_16) == 16
assert luhn_sum(CARD_19) == 0 and len(CARD_19) == 19

ID_A = with_id_check("44030619900307123")  # Shenzhen, 1990-03-07
ID_B = with_id_check("33010620000229456")  # Hangzhou, 2000-02-29 (leap day)
ID_X = next(  # an ID whose check character is X, typed lower-case
    with_id_check(f"3201021985061{n:03d}1")
    for n in range(1000)
    if id_check_digit(f"3201021985061{n:03d}1") == "X"
)


# --------------------------------------------------------------------------- interface


def test_levels_match_the_model_choices():
    from retention.models import Sensitivity

    assert (LOW, MEDIUM, HIGH) == (Sensitivity.LOW, Sensitivity.MEDIUM, Sensitivity.HIGH)
    assert set(RULE_LEVELS.values()) <= {MEDIUM, HIGH}


def test_classification_is_frozen_with_slots():
    result = classify("亲，在的")
    assert isinstance(result, Classification)
    assert not hasattr(result, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.level = HIGH  # type: ignore[misc]


@pytest.mark.parametrize("text", ["", " ", "\n"])
def test_empty_text_is_low(text):
    assert classify(text) == Classification(LOW, ())


def test_reasons_are_sorted_and_unique():
    text = "电话 13800138000 或 13912345678，邮箱 a@example.com，另一个 b@example.com"
    assert classify(text) == Classification(HIGH, ("email", "mobile"))


# --------------------------------------------------------------------------- one rule at a time

# (rule, text) pairs where exactly that rule should fire, making the message its level.
TRUE_POSITIVES = [
    # mobile
    ("mobile", "我的手机 13800138000"),
    ("mobile", "电话：138 0013 8000"),
    ("mobile", "138-0013-8000 联系我"),
    ("mobile", "+86 13800138000"),
    ("mobile", "+86-138-0013-8000"),
    ("mobile", "8613800138000"),
    ("mobile", "（+86）15912345678"),
    ("mobile", "收件人张三19912345678收"),
    ("mobile", "call me at 17712345678 please"),
    ("mobile", "电话１３８００１３８０００"),  # full-width digits
    # id_card
    ("id_card", WELL_KNOWN_ID),
    ("id_card", f"身份证号 {WELL_KNOWN_ID} 麻烦登记一下"),
    ("id_card", f"身份证：{ID_A}"),
    ("id_card", f"我的身份证是{ID_B}，闰年生日"),
    ("id_card", f"证件号 {ID_X.lower()}"),
    ("id_card", f"身份证 {ID_A[:6]} {ID_A[6:14]} {ID_A[14:]}"),  # 6-8-4 spacing
    # bank_card
    ("bank_card", WELL_KNOWN_CARD),
    ("bank_card", f"卡号 {grouped(WELL_KNOWN_CARD)}"),
    ("bank_card", f"银行卡：{CARD_16}"),
    ("bank_card", f"退款打到这张卡 {grouped(CARD_16, '-')} 吧"),
    ("bank_card", f"工行卡 {CARD_19}"),
    ("bank_card", f"卡号 {grouped(CARD_19)}"),
    ("bank_card", f"卡号{with_luhn('622213800138000')}"),  # holds a phone-like run
    # email
    ("email", "zhang.san@example.com"),
    ("email", "客户邮箱 li_si+shop@163.com 谢谢"),
    ("email", "发到 Foo.Bar@Sub.Example.CN 就行"),
    ("email", "邮箱123456789@qq.com"),
    # address
    ("address", "浙江省杭州市西湖区文三路 398 号 2 幢 301 室"),
    ("address", "上海市浦东新区张江路88弄5号"),
    ("address", "北京市朝阳区建国路 93 号万达广场 B 座 1203"),
    ("address", "收货地址：广东省深圳市南山区科技园南区 3 栋 502 室"),
    ("address", "寄到四川省成都市武侯区人民南路四段 12 号"),
    ("address", "福建省厦门市思明区鹭江道 8 号"),
    ("address", "北京市海淀区中关村大街 27 号"),
    ("address", "杭州市余杭区阳光小区 5 号楼"),
    # payment_password
    ("payment_password", "支付密码是 123456"),
    ("payment_password", "我的支付宝密码：abc123"),
    ("payment_password", "银行卡密码 888888"),
    ("payment_password", "验证码是 482913"),
    ("payment_password", "短信验证码482913，你帮我操作一下"),
    ("payment_password", "微信支付密码为：135790"),
    ("payment_password", "payment password is 1234"),
    ("payment_password", "My PIN: 0852"),
    # order_number
    ("order_number", "订单号 2026112512345678"),
    ("order_number", "订单号：TB2026112500001"),
    ("order_number", "订单编号: E20261125-0001 还没发货"),
    ("order_number", "order no. 889900112233"),
    ("order_number", "Order number: JD20261125"),
    # masked_mobile
    ("masked_mobile", "收件人电话 138****8000"),
    ("masked_mobile", "尾号是 159****1234 的那个"),
    ("masked_mobile", "138 **** 8000"),
    # im_handle
    ("im_handle", "微信号：zhangsan_88"),
    ("im_handle", "微信号 zhangsan"),
    ("im_handle", "加我微信 wxid_abc123"),
    ("im_handle", "vx: shop2024"),
    ("im_handle", "QQ 12345678"),
    ("im_handle", "加我qq：987654321"),
]


@pytest.mark.parametrize(("rule", "text"), TRUE_POSITIVES)
def test_rule_fires(rule, text):
    assert classify(text) == Classification(RULE_LEVELS[rule], (rule,))


# (rule, text) pairs where that rule must NOT fire.
FALSE_POSITIVES = [
    # mobile: wrong length, wrong prefix, inside longer digit runs
    ("mobile", "138001380001"),  # 12 digits starting with 1
    ("mobile", "1380013800"),  # 10 digits
    ("mobile", "12800138000"),  # second digit 2
    ("mobile", "10086 是客服电话"),
    ("mobile", "202611251380013800"),  # 18-digit order number
    ("mobile", "订单号 202611251380013800"),
    ("mobile", "流水号 2026112513800138000123"),
    ("mobile", f"卡号{with_luhn('622213800138000')}"),
    ("mobile", "1713800138000123"),  # timestamp-like run
    ("mobile", "SN-2026-13800138000"),  # hyphen-joined run
    ("mobile", "138****8000"),  # masked is only medium
    # id_card: wrong check digit, impossible dates, wrong length
    ("id_card", wrong_id_check(WELL_KNOWN_ID[:17])),
    ("id_card", "110105194912310021"),
    ("id_card", wrong_id_check(ID_A[:17])),
    ("id_card", with_id_check("33010619990229456")),  # 1999 is not a leap year
    ("id_card", with_id_check("11010519490230002")),  # 30 February
    ("id_card", with_id_check("11010519491331002")),  # month 13
    ("id_card", with_id_check("11010519490431002")),  # 31 April
    ("id_card", with_id_check("11010518501231002")),  # year 1850
    ("id_card", WELL_KNOWN_ID[:17]),  # 17 characters
    ("id_card", "9" + WELL_KNOWN_ID),  # inside a longer run
    ("id_card", WELL_KNOWN_ID[:17] + "Y"),
    # bank_card: non-Luhn, wrong length, bad grouping, not a card prefix
    ("bank_card", break_luhn(WELL_KNOWN_CARD)),
    ("bank_card", break_luhn(CARD_16)),
    ("bank_card", grouped(break_luhn(CARD_16))),
    ("bank_card", break_luhn(CARD_19)),
    ("bank_card", with_luhn("62220202000012")),  # 15 digits
    ("bank_card", with_luhn("6222020200001234567")),  # 20 digits
    ("bank_card", "2026112512345678"),  # Luhn-valid by chance, but a date-based order number
    ("bank_card", "订单号 " + with_luhn("622202020000999")),  # labelled as an order
    ("bank_card", "0000 0000 0000 0000"),
    ("bank_card", "4111 1111 1111 1111 1111 1111"),  # too many groups
    ("bank_card", "4111 1111-1111 1111"),  # mixed separators
    ("bank_card", WELL_KNOWN_ID),  # an ID number is an ID, not a card
    # email
    ("email", "@小王 在吗"),
    ("email", "user@localhost"),
    ("email", "邮箱是 zhangsan at qq dot com"),
    ("email", "a@b"),
    ("email", "价格 @ 99 元"),
    # address: generic location and road sentences, dates that follow a place name
    ("address", "我在上海市"),
    ("address", "这条路很远"),
    ("address", "物流显示已经到杭州市了"),
    ("address", "杭州市下雨了，3号发货"),
    ("address", "区别不大，5号之前到"),
    ("address", "上海市的朋友都知道3号到货"),
    ("address", "下单的路上 12 号"),
    ("address", "上海市徐汇区漕溪北路"),
    # payment_password: advice, questions, rules without an actual secret
    ("payment_password", "请勿向任何人透露密码"),
    ("payment_password", "忘记密码怎么办"),
    ("payment_password", "支付密码是多少？"),
    ("payment_password", "平台不会索要您的支付密码或验证码"),
    ("payment_password", "您好，密码需要 8-16 位"),
    ("payment_password", "验证码 6 位数字"),
    ("payment_password", "验证码 60 秒后可以重新获取"),
    ("payment_password", "支付时提示密码错误怎么办"),
    ("payment_password", "password reset link sent"),
    ("payment_password", "the password is incorrect"),
    ("payment_password", "shipping 1234"),
    # order_number
    ("order_number", "订单 3 件"),
    ("order_number", "帮我查下订单"),
    ("order_number", "订单号多少？"),
    ("order_number", "2026112512345678"),  # no label
    # masked_mobile
    ("masked_mobile", "****8000"),
    ("masked_mobile", "13800138000"),
    # im_handle
    ("im_handle", "微信支付可以吗"),
    ("im_handle", "可以用微信付款吗"),
    ("im_handle", "QQ 上聊吧"),
    ("im_handle", "微信 payment 不行"),
    ("im_handle", "box 1234"),
]


@pytest.mark.parametrize(("rule", "text"), FALSE_POSITIVES)
def test_rule_does_not_fire(rule, text):
    assert rule not in reasons(text)


# --------------------------------------------------------------------------- whole messages

LOW_MESSAGES = [
    "亲，在的，请问有什么可以帮您？",
    "好的亲，3号之前给您发货哦",
    "这款有 3 个颜色，价格 199 元",
    "亲，快递走的是顺丰，预计 2-3 天到",
    "我们上海市的仓库今天放假",
    "退款 128.00 元已原路返回",
    "有没有 2026 年的新款",
    "12:30 之前下单当天发",
    "优惠码 SAVE2024 可以用吗",
    "请勿向任何人透露密码",
    "忘记密码怎么办",
    "这条路很远",
    "我在上海市",
    "138001380001",
    "2026112512345678",
    "Thanks, I will wait for the parcel.",
]


@pytest.mark.parametrize("text", LOW_MESSAGES)
def test_chit_chat_is_low(text):
    assert classify(text) == Classification(LOW, ())


MIXED = [
    (
        "收件人张三，电话 13800138000，地址：浙江省杭州市西湖区文三路 398 号",
        HIGH,
        ("address", "mobile"),
    ),
    ("订单号 2026112512345678 的收件电话是 139-1234-5678", HIGH, ("mobile", "order_number")),
    (
        f"身份证 {WELL_KNOWN_ID}，卡号 {grouped(WELL_KNOWN_CARD)}，邮箱 a.b@example.com",
        HIGH,
        ("bank_card", "email", "id_card"),
    ),
    (f"退款卡号 {CARD_16}，支付密码是 654321", HIGH, ("bank_card", "payment_password")),
    ("微信号 shop_2024，订单号 TB123456789", MEDIUM, ("im_handle", "order_number")),
    ("收件人 138****8000，订单编号：TB20261125001", MEDIUM, ("masked_mobile", "order_number")),
    ("加我微信 13800138000", HIGH, ("im_handle", "mobile")),
    ("QQ邮箱 123456789@qq.com", HIGH, ("email",)),
]


@pytest.mark.parametrize(("text", "level", "expected"), MIXED)
def test_mixed_messages(text, level, expected):
    assert classify(text) == Classification(level, expected)
