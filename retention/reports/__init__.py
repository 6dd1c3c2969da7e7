"""What auditors read: the quarterly report's figures and its CSV/XLSX/PDF formats,
compliance reviews and recycle-bin reviews, and quarters.

May import: ``retention.models``, ``retention.records``, ``retention.access``,
``retention.notifications``, ``retention.policies``, ``retention.errors`` and ``audit``.
"""
