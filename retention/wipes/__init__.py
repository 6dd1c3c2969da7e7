"""Approved requests carried out: scheduling, the leased run loop in short batches,
moving to and restoring from the recycle bin, crypto-shredding, purging, and the
watchdog that resumes runs a dead worker left.

May import: ``retention.models``, ``retention.records``, ``retention.access``,
``retention.notifications``, ``retention.exports`` (evidence before a run),
``retention.jobs``, ``retention.policies``, ``retention.errors`` and ``audit``.
"""
