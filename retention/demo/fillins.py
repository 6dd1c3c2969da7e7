"""The fill-ins of a conversation's session: each ``{field}`` of a script line drawn once
per session (the buyer's order number is the one the agent repeats), from the words of
:mod:`retention.demo.scripts.words` and the personal data of :mod:`retention.demo.pii`."""

from __future__ import annotations

import random

from retention.demo import pii
from retention.demo.people import chinese_name, customer_handle
from retention.demo.plans import Plan
from retention.demo.scripts import words


def _card_fields(rng: random.Random, values: dict[str, str]) -> None:
    values["bank"], values["card"] = pii.bank_card(rng)


def _courier_fields(rng: random.Random, values: dict[str, str]) -> None:
    values["courier"], values["tracking"] = pii.courier(rng)


def _wechat(rng: random.Random) -> str:
    _, pinyin = chinese_name(rng)
    return (
        f"{pinyin}_{rng.randint(1, 999)}"
        if rng.random() < 0.6
        else f"wxid_{pinyin}{rng.randint(10, 99)}"
    )


# Each maker draws one value; values are kept for the session (see Session.__missing__).
_MAKERS = {
    "product": lambda rng: rng.choice(words.PRODUCTS),
    "color": lambda rng: rng.choice(words.COLORS),
    "size": lambda rng: rng.choice(words.SIZES),
    "material": lambda rng: rng.choice(words.MATERIALS),
    "promo": lambda rng: rng.choice(words.PROMOS),
    "weekday": lambda rng: rng.choice(words.WEEKDAYS),
    "shelf": lambda rng: rng.choice(words.SHELVES),
    "company": lambda rng: rng.choice(words.INVOICE_COMPANIES),
    "days": lambda rng: str(rng.randint(1, 3)),
    "n": lambda rng: str(rng.randint(2, 9)),
    "big": lambda rng: str(rng.randint(12, 480)),
    "price": lambda rng: str(rng.randint(29, 599)),
    "amount": lambda rng: f"{rng.randint(8_000, 260_000):,}",
    "pct": lambda rng: f"{rng.uniform(0.8, 6.5):.1f}",
    "month": lambda rng: str(rng.randint(1, 12)),
    "time": lambda rng: f"{rng.randint(14, 18)}:{rng.choice(('00', '30'))}",
    "date": lambda rng: f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
    "height": lambda rng: str(rng.randint(150, 185)),
    "weight": lambda rng: str(rng.randint(85, 170)),
    "shoe": lambda rng: str(rng.randint(35, 44)),
    "code": lambda rng: f"{rng.randrange(10**6):06d}",
    "order": pii.order_number,
    "phone": pii.mobile,
    "phone_spaced": pii.mobile_spaced,
    "masked_phone": pii.masked_mobile,
    "address": pii.address,
    "return_address": pii.address,
    "email": pii.email,
    "id_card": pii.id_card,
    "tax_id": pii.tax_id,
    "name": lambda rng: chinese_name(rng)[0],
    "customer": customer_handle,
    "wechat": _wechat,
    "city": lambda rng: rng.choice(pii.CITIES)[2],
}
_PAIRED = {"bank": _card_fields, "card": _card_fields, "courier": _courier_fields}
_PAIRED["tracking"] = _courier_fields


class Session(dict):
    """Fill-in values of one session: drawn on first use, then the same for the session."""

    __slots__ = ("plan", "rng")

    def __init__(self, rng: random.Random, plan: Plan, **known: str):
        super().__init__(known)
        self.rng = rng
        self.plan = plan

    def colleague_besides(self, speaker: str) -> None:
        """Make ``{colleague}`` someone other than the speaker ("找X确认" said by X)."""
        current = self.get("colleague")
        if current is not None and current != speaker:
            return
        names = [n for n in self.plan.colleague_names if n != speaker]
        self["colleague"] = self.rng.choice(names) if names else "店长"

    def __missing__(self, key: str) -> str:
        maker = _MAKERS.get(key)
        if maker is not None:
            value = maker(self.rng)
            self[key] = value
            return value
        if key in _PAIRED:
            _PAIRED[key](self.rng, self)
            return self[key]
        if key == "colleague":
            value = self.rng.choice(self.plan.colleague_names or ("店长",))
        elif key == "store":
            value = self.plan.store_name
        elif key == "supplier":
            value = self.plan.external_party
        else:
            raise KeyError(key)
        self[key] = value
        return value
