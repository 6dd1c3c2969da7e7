"""Approved requests carried out: scheduling, the leased run loop in short batches,
moving to and restoring from the recycle bin, crypto-shredding, purging, and the
watchdog that resumes runs a dead worker left.

Modules, low to high: ``units`` (what a batch takes), ``outcome`` (how a run ends),
``claims`` (one worker per run, through the job lease), ``evidence`` and ``review``
(reads for a run's start and its compliance review), ``move`` / ``shred`` / ``purge``
(the batches), ``runner`` (the run loop and the purge start), ``schedule`` (when a
request starts), ``watchdog``, ``recycle`` (the recycle bin's reads and restore).

May import: ``retention.models``, ``retention.records``, ``retention.access``,
``retention.notifications``, ``retention.jobs``, ``retention.policies``,
``retention.errors`` and ``audit``. Not ``retention.exports``: it sits above (the export
an archiving rule's run asks for goes through ``evidence.ask_for_evidence``).
"""
