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
    # 110–129: the second factor (TOTP) and API tokens
    SECOND_FACTOR_ENROLLED = 110, _("second factor enrolled")
    SECOND_FACTOR_REMOVED = 111, _("second factor removed")
    SECOND_FACTOR_RESET = 112, _("second factor reset by an admin")
    SECOND_FACTOR_FAILED = 113, _("second-factor code refused")
    SECOND_FACTOR_MISSING = 114, _("action refused: second factor required")
    TOKEN_REVOKED = 115, _("API token revoked")
    # 120–129: sign-in protection (lockouts, session limits)
    SIGN_IN_LOCKED_OUT = 120, _("sign-in locked out after repeated failures")
    SIGN_IN_LOCKOUT_LIFTED = 121, _("sign-in lockout lifted")
    SESSION_EXPIRED = 122, _("session ended after inactivity")

    # 200–299: chat records
    MESSAGES_INGESTED = 200, _("messages ingested")
    CHATS_IMPORTED = 201, _("chats imported")
    CONVERSATION_KEY_DESTROYED = 202, _("conversation key destroyed")
    DEMO_DATA_SEEDED = 203, _("demo data generated")
    MASTER_KEY_ROTATED = 204, _("master key rotated")

    # 300–399: organisation and configuration
    CONFIG_ADDED = 300, _("configuration added")
    CONFIG_CHANGED = 301, _("configuration changed")
    CONFIG_DELETED = 302, _("configuration deleted")

    # 400–499: deletion requests, personal deletions and hides
    REQUEST_FILED = 400, _("deletion request filed")
    REQUEST_STEP_APPROVED = 401, _("approval step approved")
    REQUEST_APPROVED = 402, _("deletion request approved and scheduled")
    REQUEST_REJECTED = 403, _("deletion request rejected")
    REQUEST_CANCELLED = 404, _("deletion request cancelled")
    REQUEST_EXPIRED = 405, _("deletion request expired")
    REQUEST_REFUSED = 406, _("deletion request refused")
    REQUEST_STARTED = 430, _("deletion started")
    REQUEST_RESUMED = 431, _("deletion resumed after an interruption")
    REQUEST_EXECUTED = 432, _("deletion completed")
    REQUEST_FAILED = 433, _("deletion failed")
    HELD_RECORDS_SKIPPED = 434, _("held records skipped")
    REQUEST_RESCHEDULED = 435, _("deletion rescheduled")
    REQUEST_AWAITS_EVIDENCE = 436, _("deletion waits for an evidence export")
    PROTECTED_RECORDS_SKIPPED = 437, _("records left: protected after the request was filed")
    RECYCLE_RESTORED = 440, _("restored from the recycle bin")
    RECYCLE_PURGE_STARTED = 441, _("recycle-bin purge started")
    RECYCLE_PURGED = 442, _("purged from the recycle bin")
    KEYS_DESTROYED_BY_WIPE = 443, _("data keys destroyed by a server-side wipe")
    # 450–459: exports (backups before deletion, evidence)
    EXPORT_REQUESTED = 450, _("export requested")
    EXPORT_COMPLETED = 451, _("export completed")
    EXPORT_FAILED = 452, _("export failed")
    EXPORT_DOWNLOADED = 453, _("export downloaded")
    EXPORT_EXPIRED = 454, _("export expired: file deleted, key destroyed")
    EXPORT_RESTARTED = 455, _("export restarted after its worker stopped")
    PERSONAL_DELETED = 410, _("personal deletion")
    PERSONAL_RESTORED = 411, _("personal deletion restored")
    PERSONAL_HELD_FOR_REVIEW = (
        412,
        _("personal deletion held for the manager's approval: frequent deletions"),
    )
    CONVERSATION_HIDDEN = 420, _("conversation hidden")
    CONVERSATION_UNHIDDEN = 421, _("conversation unhidden")

    # 500–599: holds and protected conversations
    HOLD_PLACED = 500, _("hold placed")
    HOLD_RELEASED = 501, _("hold released")
    CONVERSATION_PROTECTED = 502, _("conversation marked protected")
    CONVERSATION_UNPROTECTED = 503, _("conversation protection removed")

    # 600–699: policies
    POLICY_CHANGED = 600, _("policy changed")
    QUOTA_GRANTED = 601, _("personal quota granted")

    # 700–799: retention rules
    RULE_CREATED = 700, _("retention rule created")
    RULE_PROPOSED = 701, _("retention rule proposed for approval")
    RULE_APPROVED = 702, _("retention rule approved")
    RULE_RELAXED = 703, _("retention rule relaxed or disabled")
    RULE_RUN = 704, _("retention rule ran")
    RULE_RUN_FAILED = 705, _("retention rule run failed")

    # 800–899: compliance reviews
    REVIEW_SIGNED_OFF = 800, _("compliance review signed off")
    REVIEW_FLAGGED = 801, _("compliance review flagged with a finding")

    # 900–999: the audit log itself
    CHAIN_VERIFIED = 900, _("audit chain verified")
    CHAIN_VERIFICATION_REQUESTED = 901, _("audit chain verification requested")
    AUDIT_LOG_EXPORTED = 910, _("audit log exported")
    AUDIT_EXPORT_REQUESTED = 911, _("audit log export requested")
    AUDIT_EXPORT_COMPLETED = 912, _("audit log export completed")
    AUDIT_EXPORT_FAILED = 913, _("audit log export failed")
    AUDIT_EXPORT_DOWNLOADED = 914, _("audit log export downloaded")
    AUDIT_EXPORT_EXPIRED = 915, _("audit log export expired: file deleted, key destroyed")


def label_of(event_type: int) -> str:
    """The type's label in the active language. ``get_event_type_display()`` hashes every
    choice on each call (~1 ms here): too slow for a page of 50 events or a large CSV."""
    try:
        return str(EventType(event_type).label)
    except ValueError:
        return str(event_type)
