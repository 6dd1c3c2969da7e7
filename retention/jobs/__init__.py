"""Background work's plumbing: the one lease every job row uses (claim, heartbeat,
requeue or fail once) and the in-process queue of the zero-setup default.

May import: ``retention.models`` and ``audit``. The job functions themselves live beside
the work they do (``retention.wipes.jobs``, ``retention.exports.jobs`` …); the periodic
schedule is ``retention.cron``.
"""
