"""``{% export_card target as card %}``: what the Export card shows the signed-in member,
so that a page includes the card with one line and its view needs to know nothing."""

from __future__ import annotations

from typing import Any

from django import template

from retention.web.exports import card_context

register = template.Library()


@register.simple_tag(takes_context=True)
def export_card(context: template.Context, target) -> dict[str, Any]:
    return card_context(target, context["request"].user)
