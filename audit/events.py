"""Audit event types: one numbered range per entity, so a type's number says what it is about.

Numbers are stored in the log forever: never renumber, only add.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class EventType(models.IntegerChoices):
    # 100–199: sessions and credentials
    SIGN_IN = 100, _("signed in")
    SIGN_OUT = 101, _("signed out")
    SIGN_IN_FAILED = 102, _("sign-in failed")
    TOKEN_ISSUED = 103, _("API token issued")
    TOKEN_REFUSED = 104, _("API token refused")

    # 200–299: chat records
    MESSAGES_INGESTED = 200, _("messages ingested")
    CHATS_IMPORTED = 201, _("chats imported")
    CONVERSATION_KEY_DESTROYED = 202, _("conversation key destroyed")
    DEMO_DATA_SEEDED = 203, _("demo data generated")

    # 300–399: organisation and configuration
    CONFIG_ADDED = 300, _("configuration added")
    CONFIG_CHANGED = 301, _("configuration changed")
    CONFIG_DELETED = 302, _("configuration deleted")

    # 900–999: the audit log itself
    CHAIN_VERIFIED = 900, _("audit chain verified")
