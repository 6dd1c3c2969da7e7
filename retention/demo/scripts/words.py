"""The words fill-ins are drawn from (products, colours, sizes, promotions…), and the few
files messages carry, by role."""

from __future__ import annotations

PRODUCTS = (
    "连衣裙",
    "卫衣",
    "牛仔裤",
    "运动鞋",
    "羽绒服",
    "风衣",
    "衬衫",
    "针织开衫",
    "阔腿裤",
    "帆布鞋",
    "保温杯",
    "蓝牙耳机",
    "手机壳",
    "充电宝",
    "面膜",
    "防晒霜",
    "四件套",
    "收纳盒",
    "儿童书包",
    "猫粮",
    "茶叶礼盒",
    "电饭煲",
    "空气炸锅",
    "双肩包",
    "雨伞",
)
COLORS = ("黑色", "白色", "米白", "藏青", "卡其色", "雾霾蓝", "燕麦色", "酒红", "浅灰", "奶油黄")
SIZES = ("S", "M", "L", "XL", "XXL")
MATERIALS = ("纯棉", "聚酯纤维", "羊毛混纺", "真丝", "亚麻", "莫代尔")
PROMOS = ("双十一", "618", "双十二", "年货节", "38女王节", "开学季", "99划算节")
WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
SHELVES = ("A区", "B区", "C区", "D区")
# Invoice titles ("抬头") buyers give for company invoices.
INVOICE_COMPANIES = (
    "杭州云帆科技有限公司",
    "上海明德贸易有限公司",
    "深圳市优品电子商务有限公司",
    "北京华信咨询有限公司",
    "广州市美佳化妆品有限公司",
    "南京博雅文化传播有限公司",
    "成都天府餐饮管理有限公司",
)

# --------------------------------------------------------------------------- attachments

# (role, body, file name pattern, kind): the few messages that carry a file.
ATTACHMENTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "C": (("[图片]", "IMG_{n}.png", "png"), ("[图片] 你看这里", "mmexport{n}.png", "png")),
    "S": (("亲，电子回单已发给您，请查收", "电子回单_{n}.txt", "txt"),),
    "L": (("排班表发群里了", "排班表_{n}.png", "png"), ("盘点差异表", "盘点差异_{n}.txt", "txt")),
    "M": (("[图片]", "IMG_{n}.png", "png"), ("发货单", "发货单_{n}.txt", "txt")),
    "V": (("对账单请查收", "对账单_{n}.txt", "txt"), ("样品图", "样品_{n}.png", "png")),
    "U": (("[图片] 破损照片", "IMG_{n}.png", "png"),),
    "A": (("报表发你了", "报表_{n}.txt", "txt"), ("[图片]", "IMG_{n}.png", "png")),
    "B": (("[图片]", "IMG_{n}.png", "png"),),
}
