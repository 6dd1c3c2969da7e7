"""The auditors' workspace: the quarterly report's figures and its CSV/XLSX/PDF formats,
compliance reviews and recycle-bin reviews, quarters, and the audit log's jobs (chain
verification runs, large CSV exports of the log) with their leases.

May import: ``retention.models``, ``retention.records``, ``retention.jobs``,
``retention.access``, ``retention.notifications``, ``retention.policies``,
``retention.errors`` and ``audit``.
"""
