"""Telling people: in-app notifications and their e-mails, for steps awaiting a
decision, decisions, schedules, runs, rules and review findings.

May import: ``retention.models``, ``retention.access`` (who may decide a step) and
``audit``.
"""
