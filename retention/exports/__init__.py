"""Exports of a request's scope or a conversation (JSON Lines, CSV, HTML transcript):
asking for one and who may (``service``), the build job and its lease (``build``), the
writers (``writers``), the sealed (encrypted, checksummed, expiring) files (``sealed``),
downloads (``download``) and the export audit events (``trail``).

May import: ``retention.models``, ``retention.records``, ``retention.access``,
``retention.jobs``, ``retention.wipes``, ``retention.policies``, ``retention.errors`` and
``audit``.
"""
