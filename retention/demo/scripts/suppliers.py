"""What is said in supplier groups (roles ``V`` supplier contact, ``U`` one of ours)."""

from __future__ import annotations

from retention.demo.scripts.lines import Topic, step, topic

SUPPLIER_TOPICS: tuple[Topic, ...] = (
    topic(
        "到货",
        3,
        step(
            "U",
            "这批{product}什么时候到货？",
            "上次的{product}还差{big}件没到",
            "{promo}要备货，{product}能先发{big}件吗",
        ),
        step(
            "V",
            "本周{weekday}发出，走{courier}",
            "工厂在赶，{days}天内出货",
            "发货单已经发群里了，物流单号{tracking}",
        ),
        step("U", "好的", "收到了，数量对的", "有{n}件外箱破损，拍照给你们了"),
        step("V", "不好意思，破损的下批补上", "好的", p=0.5),
    ),
    topic(
        "对账",
        2,
        step(
            "V",
            "{month}月对账单已发邮箱，请查收，货款合计{amount}元",
            "麻烦核对一下{month}月对账单",
        ),
        step("U", "收到，财务核对后付款", "第{n}项单价不对，合同价是{price}元"),
        step("V", "我核实一下马上改", "好的，已重新发您邮箱", p=0.8),
    ),
    topic(
        "付款",
        1,
        step(
            "V",
            "开票信息：{supplier}，税号{tax_id}，开户行{bank}，账号{card}",
            "货款请打到对公账户：{bank} {card}",
            "发票已经开好了，快递单号{tracking}",
        ),
        step("U", "收到，本周安排付款", "已付款，请查收"),
        step("V", "收到，谢谢", p=0.7),
    ),
    topic(
        "样品",
        1,
        step("V", "新款样品明天寄出，收件地址还是{address}吗？", "样品寄给谁？"),
        step(
            "U",
            "对，收件人{colleague}，电话{phone}",
            "换地址了，寄到{address}，{colleague}收，{phone}",
        ),
        step("V", "好的，寄出后把单号发群里"),
    ),
    topic(
        "质量",
        1,
        step("U", "这批{product}有{n}件开线，客户退货了好几单", "{color}色差比较大，客户投诉"),
        step("V", "抱歉，发回来我们换", "我跟工厂反馈一下，下批一定改进"),
        step("U", "尽快处理，不然影响店铺评分", p=0.6),
    ),
)
