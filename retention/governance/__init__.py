"""Deletion requests before they run: filing, the frozen scope and its preview,
approval chains and decisions, cancelling, holds and protection, hides, personal
deletions, and admin policy changes.

May import: ``retention.models``, ``retention.records``, ``retention.access``,
``retention.notifications``, ``retention.exports``, ``retention.wipes`` (to schedule an
approved request), ``retention.jobs``, ``retention.policies``, ``retention.errors`` and
``audit``.
"""
