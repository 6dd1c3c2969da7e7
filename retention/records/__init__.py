"""The chat-record store: conversations and messages in (ingest API, importers, the
encrypted store, the sensitivity classifier), data keys and their rotation, which records
are held, and the reads of records that pages share (scoped to the viewer).

May import: ``retention.models``, ``retention.errors``, ``retention.policies`` and
``audit``. The store knows nothing of requests, the recycle bin or wipes.
"""
