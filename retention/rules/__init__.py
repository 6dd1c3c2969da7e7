"""Retention rules ("keep 30 days, then delete"): which rule governs a conversation,
dry runs, the admin's proposal and approval, and the daily runs they file.

May import: ``retention.models``, ``retention.records``, ``retention.access``,
``retention.notifications``, ``retention.governance``, ``retention.wipes``,
``retention.policies``, ``retention.errors`` and ``audit``.
"""
