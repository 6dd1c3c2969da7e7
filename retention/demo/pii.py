"""Fake personal data that looks and validates like the real thing.

The classifier only calls an ID-card number an ID-card number when its check digit is
right, and a bank card a bank card when it passes Luhn, so the demo's high-sensitivity
messages need numbers that pass those checks; numbers that fail them would just be
noise. Everything here draws from the caller's ``random.Random`` so a seed reproduces it.
"""

from __future__ import annotations

import random

MOBILE_PREFIXES = [
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "173",
    "176",
    "177",
    "178",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "191",
    "198",
    "199",
]

# (region code, province, city, districts, roads): real codes and streets, so addresses
# and ID numbers read naturally together.
CITIES: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "330106",
        "浙江省",
        "杭州市",
        ("西湖区", "拱墅区", "滨江区", "余杭区", "上城区"),
        ("文三路", "教工路", "天目山路", "文一西路", "江南大道", "古墩路", "莫干山路"),
    ),
    (
        "310104",
        "",
        "上海市",
        ("徐汇区", "浦东新区", "闵行区", "静安区", "长宁区"),
        ("漕溪北路", "天钥桥路", "张江路", "虹桥路", "南京西路", "龙华中路"),
    ),
    (
        "440305",
        "广东省",
        "深圳市",
        ("南山区", "福田区", "宝安区", "龙岗区"),
        ("深南大道", "科苑路", "南海大道", "沙河西路", "海德三道", "宝安大道"),
    ),
    (
        "440106",
        "广东省",
        "广州市",
        ("天河区", "越秀区", "海珠区", "番禺区"),
        ("天河路", "体育西路", "中山大道", "黄埔大道", "江南大道中", "市桥街"),
    ),
    (
        "110105",
        "",
        "北京市",
        ("朝阳区", "海淀区", "东城区", "丰台区"),
        ("建国路", "朝阳北路", "中关村大街", "学院路", "望京街", "东三环中路"),
    ),
    (
        "320102",
        "江苏省",
        "南京市",
        ("玄武区", "秦淮区", "鼓楼区", "建邺区"),
        ("中山路", "珠江路", "汉中路", "江东中路", "中山东路"),
    ),
    (
        "320508",
        "江苏省",
        "苏州市",
        ("姑苏区", "吴中区", "工业园区"),
        ("观前街", "人民路", "干将西路", "星湖街", "东环路"),
    ),
    (
        "350203",
        "福建省",
        "厦门市",
        ("思明区", "湖里区", "集美区"),
        ("中山路", "湖滨南路", "嘉禾路", "莲前西路"),
    ),
    (
        "120101",
        "",
        "天津市",
        ("和平区", "南开区", "河西区"),
        ("南京路", "滨江道", "卫津路", "友谊路"),
    ),
    (
        "370202",
        "山东省",
        "青岛市",
        ("市南区", "崂山区", "市北区"),
        ("香港中路", "东海西路", "延安三路", "海尔路"),
    ),
    (
        "510104",
        "四川省",
        "成都市",
        ("锦江区", "武侯区", "高新区", "青羊区"),
        ("春熙路", "人民南路", "天府大道", "科华北路"),
    ),
    (
        "500103",
        "",
        "重庆市",
        ("渝中区", "江北区", "渝北区"),
        ("解放碑步行街", "民族路", "观音桥步行街", "金开大道"),
    ),
)

COMMUNITIES = (
    "阳光花园",
    "翠苑一区",
    "锦绣华庭",
    "万科城",
    "保利天悦",
    "绿城桂花园",
    "碧桂园",
    "华润城",
    "金地格林小镇",
    "融创壹号院",
    "新华小区",
    "幸福里",
    "东方明珠苑",
    "星河湾",
)
BUILDINGS = ("华星时代广场", "创业大厦", "科技园", "国际金融中心", "数字大厦", "商务中心")

ID_CHECK_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"

# Issuer prefixes (BINs) of the big Chinese banks, UnionPay debit cards.
BANK_BINS = (
    ("工商银行", "622202", 19),
    ("工商银行", "621226", 19),
    ("建设银行", "621700", 19),
    ("农业银行", "622848", 19),
    ("招商银行", "622588", 16),
    ("中国银行", "621661", 19),
    ("交通银行", "622262", 19),
    ("浦发银行", "622521", 16),
)

EMAIL_DOMAINS = ("qq.com", "163.com", "126.com", "sina.com", "foxmail.com", "outlook.com")
PINYIN_SYLLABLES = [
    "zhang",
    "wang",
    "li",
    "liu",
    "chen",
    "yang",
    "huang",
    "zhao",
    "wu",
    "zhou",
    "xu",
    "sun",
    "ma",
    "zhu",
    "hu",
    "guo",
    "he",
    "lin",
    "luo",
    "xiaomei",
    "xiaoyu",
    "tiantian",
    "lele",
    "ann",
    "lily",
    "coco",
    "jack",
    "amy",
    "mia",
    "leo",
]


def mobile(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(100_000_000):08d}"


def mobile_spaced(rng: random.Random) -> str:
    number = mobile(rng)
    return f"{number[:3]} {number[3:7]} {number[7:]}"


def masked_mobile(rng: random.Random) -> str:
    number = mobile(rng)
    return f"{number[:3]}****{number[7:]}"


def id_card(rng: random.Random) -> str:
    """An 18-character resident ID number with a real region, birth date and check digit."""
    region = rng.choice(CITIES)[0]
    year = rng.randint(1966, 2004)
    month = rng.randint(1, 12)
    day = rng.randint(1, 28)
    body = f"{region}{year}{month:02d}{day:02d}{rng.randrange(1000):03d}"
    total = sum(int(ch) * w for ch, w in zip(body, ID_CHECK_WEIGHTS, strict=True))
    return body + ID_CHECK_CHARS[total % 11]


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass the Luhn check."""
    total = 0
    # Walking right to left, the digit next to the (future) check digit is doubled.
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def bank_card(rng: random.Random) -> tuple[str, str]:
    """(bank name, card number) for a UnionPay card that passes Luhn."""
    bank, prefix, length = rng.choice(BANK_BINS)
    partial = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    number = partial + luhn_check_digit(partial)
    if rng.random() < 0.4:
        # People often type cards in groups of four, as printed.
        number = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return bank, number


def email(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.35:
        local = str(rng.randint(10_000_000, 3_999_999_999))  # a QQ number
        return f"{local}@qq.com"
    local = rng.choice(PINYIN_SYLLABLES) + rng.choice(PINYIN_SYLLABLES)
    if roll < 0.8:
        local += str(rng.randint(1, 9999))
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


def address(rng: random.Random) -> str:
    _, province, city, districts, roads = rng.choice(CITIES)
    head = f"{province}{city}{rng.choice(districts)}{rng.choice(roads)}{rng.randint(1, 999)}号"
    if rng.random() < 0.3:
        floor_room = f"{rng.randint(3, 28)}0{rng.randint(1, 9)}"
        return f"{head}{rng.choice(BUILDINGS)}{rng.choice('ABCD')}座{floor_room}室"
    return (
        f"{head}{rng.choice(COMMUNITIES)}{rng.randint(1, 30)}栋"
        f"{rng.randint(1, 4)}单元{rng.randint(1, 33)}0{rng.randint(1, 4)}室"
    )


def order_number(rng: random.Random) -> str:
    # Taobao-style: 19 digits.
    return str(rng.randint(1, 4)) + f"{rng.randrange(10**18):018d}"


COURIERS = (
    ("顺丰", "SF", 13),
    ("中通", "7", 14),
    ("圆通", "YT", 13),
    ("韵达", "43", 13),
    ("申通", "77", 13),
    ("极兔", "JT", 13),
    ("京东物流", "JDV", 12),
    ("EMS", "11", 11),
)


def courier(rng: random.Random) -> tuple[str, str]:
    """(courier name, tracking number); tracking numbers stay under 16 digits, like real ones."""
    name, prefix, digits = rng.choice(COURIERS)
    return name, prefix + "".join(str(rng.randrange(10)) for _ in range(digits))


def tax_id(rng: random.Random) -> str:
    """A unified social credit code shape (18 characters), as printed on invoices."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    region = rng.choice(CITIES)[0]
    return "91" + region + "".join(rng.choice(alphabet) for _ in range(10))
