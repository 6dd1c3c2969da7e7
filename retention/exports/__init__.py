"""Exports of a request's scope or a conversation (JSON Lines, CSV, HTML transcript):
who may ask, the build job, the writers, the sealed (encrypted, checksummed, expiring)
files, and downloads.

May import: ``retention.models``, ``retention.records``, ``retention.access``,
``retention.jobs``, ``retention.policies``, ``retention.errors`` and ``audit``.
"""
