"""The one lease every job row uses: claim, heartbeat, release, finish or fail, and the
sweep that requeues a row whose worker went silent or fails it once.

A job row (an export, a verification run, an audit-log export, a wipe run) is the truth
about its job. A :class:`Lease` is a small declarative spec of such a model: its status values,
the names of its lease fields and the hooks that write its audit events. Two ways of
holding a row are supported:

- a **heartbeat** (``heartbeat`` field): the run touches the row every few seconds; it
  is stale once the last beat is older than ``stale_after``. The run is told from an
  earlier one by the attempt number: a run taken for dead (requeued by the sweep) finds
  at its next beat or write that the row is no longer its own.
- a **deadline** (``expires`` and ``owner`` fields): the run holds the row until the
  deadline it pushes forward; a row whose deadline passed may be taken over directly
  (``claim(take_expired=True)``) and is told from others by its owner's name. A run
  that failed may let go of the row for a back-off (``release``).

Claiming is a compare-and-swap (a conditional UPDATE): of two workers claiming the same
row, one wins. Every claim counts an attempt; past ``max_attempts`` the sweep fails the
row once instead of requeueing it.

May import Django and the models only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import django_rq
from django.db import models, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rq.job import JobStatus

M = TypeVar("M", bound=models.Model)

# RQ states of a job that will still run.
PENDING_JOB_STATUSES = {
    JobStatus.CREATED,
    JobStatus.QUEUED,
    JobStatus.STARTED,
    JobStatus.DEFERRED,
    JobStatus.SCHEDULED,
}
ERROR_MAX_CHARS = 2000


class LeaseLost(Exception):
    """This run no longer holds its row: it was taken for dead and queued again (or
    failed), or another worker holds the lease now. The run stops, writing nothing."""


def pacer(beat: Callable[[], None], every: float) -> Callable[[], None]:
    """``beat``, called at most once every ``every`` seconds: for a loop that works in
    small steps, one UPDATE every few seconds rather than one per step."""
    last = time.monotonic()

    def maybe() -> None:
        nonlocal last
        if time.monotonic() - last >= every:
            beat()
            last = time.monotonic()

    return maybe


def _value(setting: Any) -> Any:
    """A spec value, or a callable giving it (for values read from settings at run time)."""
    return setting() if callable(setting) else setting


@dataclass(frozen=True)
class Lease(Generic[M]):
    """How one job-row model is leased: what its statuses and fields are called, and what
    its requeues and failures write to the audit log."""

    model: type[M]
    queued: str
    running: str
    failed: str
    # A run that gave no sign of life for this long was left by a dead worker (a
    # timedelta, or a callable giving one).
    stale_after: timedelta | Callable[[], timedelta]
    # Runs a row gets: one whose job kills its worker every time fails in the end.
    max_attempts: int | Callable[[], int]
    # The queue job that works a row (called with its pk), enqueued on commit. With
    # ``job_id`` (e.g. "export-{pk}") the job has an id of its own, so the sweep can tell
    # a queued row whose job Redis lost from one whose job waits its turn.
    job: Callable[[int], Any] | None = None
    queue: str = "default"
    job_id: str | None = None
    # Field names.
    status: str = "status"
    attempts: str = "attempts"
    heartbeat: str | None = "heartbeat_at"
    expires: str | None = None
    owner: str | None = None
    started: str | None = "started_at"
    finished: str | None = "finished_at"
    created: str = "created_at"
    error: str = "error"
    # Loaded with the rows the sweep hands to the hooks.
    related: tuple[str, ...] = ()
    # Fields a failure resets (e.g. an export's file and key).
    cleared_on_failure: Mapping[str, Any] = field(default_factory=dict)
    # The error of a row failed by the sweep (``n``: its attempts), and of a queued row
    # whose job ended before it claimed the row (``status``: the job's).
    gave_up: Any = _("Its worker stopped %(n)d times.")
    job_ended: Any = _("Its job ended (%(status)s) before it began.")
    # Audit hooks, called in the transaction that changes the row: ``on_requeued(row,
    # details)`` and ``on_failed(row, error)``. ``discard(row)``: after the sweep's
    # failure of a row is committed, remove what the dead run left (a file).
    on_requeued: Callable[[M, dict[str, Any]], None] | None = None
    on_failed: Callable[[M, str], None] | None = None
    discard: Callable[[M], None] | None = None

    # --- a run ----------------------------------------------------------------------------

    def claim(
        self,
        pk: int,
        *,
        owner: str = "",
        take_expired: bool = False,
        now: datetime | None = None,
        **changes: Any,
    ) -> M | None:
        """Take the row for a new run: a compare-and-swap from queued to running (with
        ``take_expired``, also from running under a deadline that passed or that
        ``owner`` holds), counting the attempt and setting ``changes``. The row as
        claimed (with ``related`` loaded), or None: another run has it, or it is done."""
        now = now or timezone.now()
        claimable = Q(**{self.status: self.queued})
        if take_expired:
            claimable |= Q(**{self.status: self.running}) & self._expired(now, owner=owner)
        values: dict[str, Any] = {
            self.status: self.running,
            self.attempts: F(self.attempts) + 1,
        }
        if self.started:
            values[self.started] = now
        values.update(self._alive(now))
        if self.owner:
            values[self.owner] = owner
        values.update(changes)
        with transaction.atomic():
            if not self.model.objects.filter(claimable, pk=pk).update(**values):
                return None
            return self.model.objects.select_related(*self.related).get(pk=pk)

    def this_run(self, row: M, *, owner: str | None = None) -> QuerySet[M]:
        """The row, as long as this run still holds it. ``owner``: the name a deadline
        lease was claimed under, for a ``row`` read again since (it names the holder of
        that moment, perhaps another run)."""
        if self.owner:
            held = {self.owner: getattr(row, self.owner) if owner is None else owner}
        else:
            held = {self.attempts: getattr(row, self.attempts)}
        return self.model.objects.filter(pk=row.pk, **{self.status: self.running}, **held)

    def beat(self, row: M, *, now: datetime | None = None) -> None:
        """Alive: the heartbeat touched, or the deadline pushed on. LeaseLost if this run
        no longer holds the row."""
        if not self.this_run(row).update(**self._alive(now or timezone.now())):
            raise LeaseLost

    def hold(self, row: M, *, owner: str | None = None) -> M:
        """The row locked (SELECT … FOR UPDATE, in the caller's transaction) for a step of
        this run's work; LeaseLost if this run no longer holds it (``owner``: see
        ``this_run``)."""
        locked = self.this_run(row, owner=owner).select_for_update().first()
        if locked is None:
            raise LeaseLost
        return locked

    def release(self, row: M, *, backoff: timedelta) -> bool:
        """Give a deadline lease up for ``backoff`` (a retry after a failure): no owner,
        and the deadline at the end of the back-off, so that a claim with
        ``take_expired`` (or the sweep) picks it up then. False if this run lost it."""
        assert self.expires and self.owner, "release() is for deadline leases"
        return bool(
            self.this_run(row).update(**{self.owner: "", self.expires: timezone.now() + backoff})
        )

    def finish(self, row: M, status: str, *, still: Q | None = None, **fields: Any) -> bool:
        """The run's outcome (``status`` and ``fields``, the finish time by default),
        written only while this run holds the row and it matches ``still``; call it in the
        transaction that writes the outcome's audit event. False: superseded."""
        if self.finished:
            fields.setdefault(self.finished, timezone.now())
        return bool(
            self.this_run(row).filter(still or Q()).update(**{self.status: status}, **fields)
        )

    def fail(self, row: M, error: str, *, still: Q | None = None) -> bool:
        """Failed (``cleared_on_failure`` reset) and audited, while this run holds the row
        (and the row matches ``still``). False if another run took over meanwhile."""
        error = str(error)[:ERROR_MAX_CHARS]
        with transaction.atomic():
            changes = {self.error: error, **self.cleared_on_failure}
            failed = self.finish(row, self.failed, still=still, **changes)
            if failed and self.on_failed:
                self.on_failed(row, error)
        return failed

    def enqueue(self, pk: int) -> None:
        """The row's job, enqueued once the current transaction commits."""
        assert self.job is not None, "a lease without a job cannot enqueue"
        queue, job, job_id = self.queue, self.job, self._job_id(pk)
        transaction.on_commit(lambda: django_rq.get_queue(queue).enqueue(job, pk, job_id=job_id))

    # --- the sweep ------------------------------------------------------------------------

    def stale(self, *, now: datetime | None = None) -> QuerySet[M]:
        """Running rows whose worker went silent (the "expired" query), in id order;
        heartbeat leases annotate ``beat``, the last sign of life."""
        now = now or timezone.now()
        running = self.model.objects.filter(**{self.status: self.running})
        if self.expires:
            return running.filter(**{f"{self.expires}__lt": now}).order_by("pk")
        fields = [f for f in (self.heartbeat, self.started, self.created) if f]
        return (
            running.annotate(beat=Coalesce(*fields))
            .filter(beat__lt=now - _value(self.stale_after))
            .order_by("pk")
        )

    def sweep(self, *, now: datetime | None = None) -> list[int]:
        """Every few minutes: a running row whose worker went silent is queued again
        (audited) and its job enqueued on commit, or, after ``max_attempts`` runs, failed
        once (audited, then ``discard``). A queued row whose job Redis lost is enqueued
        again; one whose job ended before it began is failed. Returns the rows requeued."""
        now = now or timezone.now()
        silent = self._expired(now)
        requeued = []
        for row in self.stale(now=now).select_related(*self.related):
            attempts = getattr(row, self.attempts)
            if attempts >= _value(self.max_attempts):
                if self.fail(row, self.gave_up % {"n": attempts}, still=silent) and self.discard:
                    self.discard(row)
                continue
            with transaction.atomic():
                back = {self.status: self.queued} | ({self.owner: ""} if self.owner else {})
                if not self.this_run(row).filter(silent).update(**back):
                    continue  # it beat meanwhile, or finished
                if self.on_requeued:
                    details: dict[str, Any] = {"attempts": attempts}
                    if self.heartbeat:
                        details["heartbeat_at"] = row.beat.isoformat()
                    self.on_requeued(row, details)
                self.enqueue(row.pk)
            requeued.append(row.pk)
        if self.job_id:
            requeued += self._lost_jobs(now, skip=requeued)
        return requeued

    def _lost_jobs(self, now: datetime, *, skip: list[int]) -> list[int]:
        """Queued, but its job is gone (Redis restarted or was flushed): nothing would
        ever run it. Enqueued again; one whose job ran and ended before it claimed the
        row fails (running it again would only end the same way, at every sweep)."""
        waiting = (
            self.model.objects.filter(
                **{self.status: self.queued, f"{self.created}__lt": now - _value(self.stale_after)}
            )
            .exclude(pk__in=skip)
            .select_related(*self.related)
            .order_by("pk")
        )
        requeued = []
        queue = django_rq.get_queue(self.queue)
        for row in waiting:
            job = queue.fetch_job(self._job_id(row.pk))
            job_status = job.get_status() if job is not None else None
            if job_status in PENDING_JOB_STATUSES:
                continue  # still waiting its turn
            with transaction.atomic():
                queued = self.model.objects.select_for_update().filter(
                    pk=row.pk, **{self.status: self.queued}
                )
                if not queued.exists():
                    continue  # a worker claimed it meanwhile
                if job is None:
                    if self.on_requeued:
                        lost = {"attempts": getattr(row, self.attempts), "job": "lost"}
                        self.on_requeued(row, lost)
                    self.enqueue(row.pk)
                    requeued.append(row.pk)
                    continue
                error = str(self.job_ended % {"status": job_status})
                ended = {self.status: self.failed, self.error: error}
                if self.finished:
                    ended[self.finished] = timezone.now()
                queued.update(**ended)
                if self.on_failed:
                    self.on_failed(row, error)
        return requeued

    # --- helpers --------------------------------------------------------------------------

    def _alive(self, now: datetime) -> dict[str, Any]:
        """The fields a sign of life sets."""
        if self.expires:
            return {self.expires: now + _value(self.stale_after)}
        assert self.heartbeat, "a lease needs a heartbeat or an expires field"
        return {self.heartbeat: now}

    def _expired(self, now: datetime, *, owner: str = "") -> Q:
        """Rows whose worker gave no sign of life in time (or whose lease ``owner`` holds)."""
        if self.expires:
            expired = Q(**{f"{self.expires}__isnull": True}) | Q(**{f"{self.expires}__lte": now})
            return expired | Q(**{self.owner: owner}) if owner else expired
        cutoff = now - _value(self.stale_after)
        stale = Q(**{f"{self.heartbeat}__lt": cutoff})
        if self.started:
            stale |= Q(**{f"{self.heartbeat}__isnull": True, f"{self.started}__lt": cutoff})
        return stale

    def _job_id(self, pk: int) -> str | None:
        return self.job_id.format(pk=pk) if self.job_id else None
