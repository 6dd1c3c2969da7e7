"""Chinese personal names with their pinyin, for display names and sign-in names."""

from __future__ import annotations

import random

# Common surnames, most frequent first (weights roughly follow real frequency).
SURNAMES: tuple[tuple[str, str, int], ...] = (
    ("王", "wang", 30),
    ("李", "li", 30),
    ("张", "zhang", 28),
    ("刘", "liu", 22),
    ("陈", "chen", 18),
    ("杨", "yang", 12),
    ("黄", "huang", 9),
    ("赵", "zhao", 9),
    ("吴", "wu", 8),
    ("周", "zhou", 8),
    ("徐", "xu", 6),
    ("孙", "sun", 6),
    ("马", "ma", 6),
    ("朱", "zhu", 5),
    ("胡", "hu", 5),
    ("郭", "guo", 5),
    ("何", "he", 4),
    ("林", "lin", 4),
    ("高", "gao", 4),
    ("罗", "luo", 4),
    ("郑", "zheng", 4),
    ("梁", "liang", 3),
    ("谢", "xie", 3),
    ("宋", "song", 3),
    ("唐", "tang", 3),
    ("韩", "han", 3),
    ("冯", "feng", 3),
    ("邓", "deng", 3),
    ("曹", "cao", 2),
    ("彭", "peng", 2),
    ("曾", "zeng", 2),
    ("肖", "xiao", 2),
    ("田", "tian", 2),
    ("董", "dong", 2),
    ("潘", "pan", 2),
    ("袁", "yuan", 2),
    ("蔡", "cai", 2),
    ("蒋", "jiang", 2),
    ("叶", "ye", 2),
    ("程", "cheng", 2),
    ("苏", "su", 2),
    ("吕", "lv", 1),
    ("丁", "ding", 1),
    ("沈", "shen", 1),
    ("任", "ren", 1),
    ("姚", "yao", 1),
    ("卢", "lu", 1),
    ("钟", "zhong", 1),
)

GIVEN: tuple[tuple[str, str], ...] = tuple(
    (ch, py)
    for ch, py in (
        item.split(":")
        for item in [
            "伟:wei",
            "芳:fang",
            "娜:na",
            "敏:min",
            "静:jing",
            "丽:li",
            "强:qiang",
            "磊:lei",
            "军:jun",
            "洋:yang",
            "勇:yong",
            "艳:yan",
            "杰:jie",
            "娟:juan",
            "涛:tao",
            "明:ming",
            "超:chao",
            "秀:xiu",
            "霞:xia",
            "平:ping",
            "刚:gang",
            "婷:ting",
            "雪:xue",
            "琳:lin",
            "晨:chen",
            "浩:hao",
            "宇:yu",
            "欣:xin",
            "怡:yi",
            "佳:jia",
            "子:zi",
            "萱:xuan",
            "轩:xuan",
            "博:bo",
            "文:wen",
            "思:si",
            "雨:yu",
            "涵:han",
            "嘉:jia",
            "俊:jun",
            "凯:kai",
            "鹏:peng",
            "飞:fei",
            "慧:hui",
            "倩:qian",
            "颖:ying",
            "晓:xiao",
            "建:jian",
            "国:guo",
            "华:hua",
            "玲:ling",
            "红:hong",
            "燕:yan",
            "辉:hui",
            "斌:bin",
            "鑫:xin",
            "瑶:yao",
            "璐:lu",
            "婉:wan",
            "诗:shi",
            "梦:meng",
            "晴:qing",
            "悦:yue",
            "然:ran",
            "天:tian",
            "一:yi",
            "志:zhi",
            "远:yuan",
            "海:hai",
            "成:cheng",
            "彤:tong",
            "蕾:lei",
            "露:lu",
            "峰:feng",
            "鸣:ming",
            "航:hang",
            "宁:ning",
            "楠:nan",
            "安:an",
            "乐:le",
        ]
    )
)


def chinese_name(rng: random.Random) -> tuple[str, str]:
    """(display name, pinyin) such as ("王晓雨", "wangxiaoyu")."""
    surname, surname_py, _ = rng.choices(SURNAMES, weights=_SURNAME_WEIGHTS)[0]
    count = 1 if rng.random() < 0.3 else 2
    parts = [rng.choice(GIVEN) for _ in range(count)]
    return surname + "".join(p[0] for p in parts), surname_py + "".join(p[1] for p in parts)


_SURNAME_WEIGHTS = [w for _, _, w in SURNAMES]

# Customer handles as they show in a Taobao/Qianniu chat list.
_NICK_ADJ = ("快乐的", "爱吃", "安静的", "小小", "努力的", "可爱的", "温柔的", "暴躁的", "佛系")
_NICK_NOUN = ("小熊", "草莓", "兔子", "橘子", "猫咪", "鲸鱼", "土豆", "芒果", "星星", "阿狸")


def customer_handle(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return f"买家_tb{rng.randint(1000, 99_999_999)}"
    if roll < 0.65:
        return f"tb{rng.randint(100_000, 9_999_999_999)}"
    if roll < 0.85:
        return f"{rng.choice(_NICK_ADJ)}{rng.choice(_NICK_NOUN)}{rng.randint(1, 2025)}"
    _, pinyin = chinese_name(rng)
    return f"{pinyin}{rng.randint(1, 999)}"


SUPPLIERS: tuple[tuple[str, str], ...] = (
    ("义乌市晨光包装有限公司", "晨光包装"),
    ("广州市白云区锦绣服装厂", "锦绣服装"),
    ("东莞市欣达电子科技有限公司", "欣达电子"),
    ("宁波海天日用品有限公司", "海天日用"),
    ("泉州鸿运鞋业有限公司", "鸿运鞋业"),
    ("苏州恒远纺织品有限公司", "恒远纺织"),
    ("深圳市顺捷供应链管理有限公司", "顺捷供应链"),
    ("杭州绿野茶业有限公司", "绿野茶业"),
)
SUPPLIER_TITLES = ("经理", "总", "主管", "业务员", "跟单")
