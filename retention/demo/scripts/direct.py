"""What two colleagues say in a one-to-one chat (roles ``A`` the one who starts, ``B`` the
other)."""

from __future__ import annotations

from retention.demo.scripts.lines import Topic, step, topic

DIRECT_TOPICS: tuple[Topic, ...] = (
    topic(
        "换班",
        3,
        step("A", "{weekday}能帮我顶个班吗？家里有点事", "明天晚班能跟你换一下吗"),
        step("B", "可以啊", "那天我也有事，不好意思", "行，你跟店长说一声"),
        step("A", "谢谢！请你喝奶茶", "好的", p=0.7),
    ),
    topic(
        "请假",
        1,
        step("A", "我{date}想请一天假", "{weekday}下午请个假去医院"),
        step("B", "可以，在系统里提一下申请", "这周人手紧，能不能换到下周"),
        step("A", "好的，谢谢", "那我改到下周"),
    ),
    topic(
        "交接客户",
        2,
        step(
            "A",
            "这个客户{customer}你帮我跟一下，他要换货",
            "客户电话{phone}，你下午给他回个电话",
            "订单{order}客户说要改地址，新地址{address}",
        ),
        step("B", "好的", "收到，我来处理", "已经回过电话了"),
    ),
    topic(
        "报表",
        2,
        step("A", "这周的销售报表发你邮箱了", "上个月的数据帮我拉一下", "退款明细做好了吗"),
        step("B", "收到", "下午给你", "好的，谢谢"),
    ),
    topic(
        "闲聊",
        3,
        step("A", "中午吃什么", "晚上下班一起去吃火锅吗", "今天好累啊", "奶茶拼单吗"),
        step("B", "都行", "好啊", "我带饭了", "冲！"),
        step("A", "那就老地方", "哈哈好", p=0.6),
    ),
    topic(
        "工作请示",
        2,
        step(
            "A",
            "客户要求仅退款不退货，金额{price}元，可以吗？",
            "有个客户要开专票，我们能开吗？",
            "{product}库存不够了，要不要下架",
        ),
        step("B", "金额不大就同意吧", "找财务{colleague}确认一下", "先下架，补货了再上"),
        step("A", "好的", "明白"),
    ),
)
