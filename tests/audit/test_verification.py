"""Verification runs, daily digests, and an outside verifier checking a digest it kept."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction
from django.utils import timezone

from audit import log as audit
from audit.chain import verify_chain
from audit.events import EventType
from audit.log import hash_of_event
from audit.models import AuditEvent, ChainDigest, ChainVerification, VerificationStatus
from audit.verification import record_digests
from retention.reports.verification_runs import do_request_verification, run_verification
from tests.audit.test_log import _tamper, write_events
from tests.conftest import on_postgres

pytestmark = pytest.mark.django_db


def at(day: str, hour: int) -> datetime:
    return timezone.make_aware(datetime.fromisoformat(day).replace(hour=hour))


def write_on(day: str, hour: int, n: int = 1) -> list[AuditEvent]:
    """Events as if written on that day (the clock is frozen by patching now())."""
    from unittest import mock

    with mock.patch("audit.log.timezone.now", return_value=at(day, hour)):
        return write_events(n)


def rewrite_from(event: AuditEvent, **changes) -> None:
    """What an attacker with database access does: change an event and recompute every
    hash from it to the head, so that every link holds again."""
    events = list(AuditEvent.objects.filter(id__gte=event.pk).order_by("id"))
    prev = AuditEvent.objects.filter(id__lt=event.pk).order_by("-id").first()
    prev_hash = prev.hash if prev else audit.GENESIS_HASH
    for i, e in enumerate(events):
        if i == 0:
            for name, value in changes.items():
                setattr(e, name, value)
        e.prev_hash = prev_hash
        e.hash = hash_of_event(e)
        prev_hash = e.hash
    # Two passes: the unique hash columns would clash with rows not yet rewritten.
    for e in events:
        _tamper(
            "UPDATE audit_auditevent SET prev_hash = %s, hash = %s, details = %s WHERE id = %s",
            ["x" + e.prev_hash[1:], "x" + e.hash[1:], "{}", e.pk],
        )
    import json

    for e in events:
        _tamper(
            "UPDATE audit_auditevent SET prev_hash = %s, hash = %s, details = %s WHERE id = %s",
            [e.prev_hash, e.hash, json.dumps(e.details, ensure_ascii=False), e.pk],
        )


def test_a_digest_is_recorded_for_each_finished_day_once():
    day1 = write_on("2026-03-01", 10, 2)
    write_on("2026-03-01", 23)
    day3 = write_on("2026-03-03", 9)
    write_on("2026-03-04", 9)  # today: not finished
    recorded = record_digests(today=datetime(2026, 3, 4).date())
    assert [d.isoformat() for d in recorded] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    digests = {d.day.isoformat(): d for d in ChainDigest.objects.all()}
    last_of_day1 = AuditEvent.objects.filter(id__gt=day1[-1].pk).order_by("id").first()
    assert digests["2026-03-01"].head_event_id == last_of_day1.pk
    assert digests["2026-03-01"].head_hash == last_of_day1.hash
    # A day without events keeps the head of the day before.
    assert digests["2026-03-02"].head_event_id == last_of_day1.pk
    assert digests["2026-03-03"].head_event_id == day3[0].pk
    # Run again (a doubled cron run): nothing new.
    assert record_digests(today=datetime(2026, 3, 4).date()) == []
    assert ChainDigest.objects.count() == 3


def test_an_empty_log_records_no_digest():
    assert record_digests() == []


def test_the_database_refuses_to_change_a_digest():
    write_on("2026-03-01", 10)
    record_digests(today=datetime(2026, 3, 2).date())
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ChainDigest.objects.update(head_hash="0" * 64)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ChainDigest.objects.all().delete()


def test_a_rewritten_chain_passes_its_links_but_not_the_digests():
    events = write_on("2026-03-01", 10, 4)
    record_digests(today=datetime(2026, 3, 2).date())
    write_on("2026-03-02", 10, 2)
    rewrite_from(events[1], details={"n": 1, "名字": "改过的值"})

    # Without digests the rewrite is invisible: every link and hash holds.
    assert verify_chain(digests={}).intact
    report = verify_chain()
    assert not report.intact
    assert report.broken_id == events[3].pk  # the head of 2026-03-01
    assert "digest of 2026-03-01" in report.reason
    assert report.last_good_id == events[2].pk


@pytest.mark.skipif(not on_postgres(), reason="the tamper helper disables triggers on PostgreSQL")
def test_a_changed_digest_is_reported_too():
    events = write_on("2026-03-01", 10, 3)
    record_digests(today=datetime(2026, 3, 2).date())
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE audit_chaindigest DISABLE TRIGGER audit_chaindigest_append_only"
        )
        cursor.execute("UPDATE audit_chaindigest SET head_hash = %s", ["f" * 64])
        cursor.execute("ALTER TABLE audit_chaindigest ENABLE TRIGGER audit_chaindigest_append_only")
    report = verify_chain()
    assert not report.intact
    assert report.broken_id == events[-1].pk
    assert "digest" in report.reason


def test_a_verification_run_records_intact_up_to_the_head(cast):
    events = write_events(4)
    run = do_request_verification(acting_user=cast.auditor)
    assert run.status == VerificationStatus.QUEUED
    requested = AuditEvent.objects.order_by("-id").first()
    assert requested.event_type == EventType.CHAIN_VERIFICATION_REQUESTED
    assert requested.actor_id == cast.auditor.pk

    run = run_verification(run.pk)
    assert run.status == VerificationStatus.INTACT
    assert run.up_to_id == requested.pk
    assert run.last_good_id == requested.pk
    assert run.events_checked == len(events) + 1
    assert run.started_at and run.finished_at
    verified = AuditEvent.objects.order_by("-id").first()
    assert verified.event_type == EventType.CHAIN_VERIFIED
    assert verified.actor_id == cast.auditor.pk
    assert verified.details["intact"] is True
    assert verified.details["last_good_id"] == requested.pk


def test_a_verification_run_names_a_tampered_event(cast):
    events = write_events(5)
    _tamper("UPDATE audit_auditevent SET actor_name = 'mallory' WHERE id = %s", [events[2].pk])
    run = run_verification(do_request_verification(acting_user=cast.admin).pk)
    assert run.status == VerificationStatus.BROKEN
    assert run.broken_id == events[2].pk
    assert run.last_good_id == events[1].pk
    assert "content" in run.reason


def test_asking_twice_while_one_is_queued_returns_the_same_run(cast):
    first = do_request_verification(acting_user=cast.auditor)
    second = do_request_verification(acting_user=cast.admin)
    assert first.pk == second.pk
    assert ChainVerification.objects.count() == 1
    assert AuditEvent.objects.filter(event_type=EventType.CHAIN_VERIFICATION_REQUESTED).count() == 1


def test_a_run_is_claimed_once(cast):
    run = do_request_verification(acting_user=cast.auditor)
    run_verification(run.pk)
    checked = AuditEvent.objects.filter(event_type=EventType.CHAIN_VERIFIED).count()
    again = run_verification(run.pk)  # a doubled job
    assert again.status == VerificationStatus.INTACT
    assert AuditEvent.objects.filter(event_type=EventType.CHAIN_VERIFIED).count() == checked


def test_a_stale_running_run_does_not_block_a_new_one(cast):
    stale = ChainVerification.objects.create(status=VerificationStatus.RUNNING)
    ChainVerification.objects.filter(pk=stale.pk).update(
        requested_at=timezone.now() - timedelta(hours=2)
    )
    assert do_request_verification(acting_user=cast.auditor).pk != stale.pk


# --- an outside verifier ------------------------------------------------------------------


def test_a_digest_held_outside_is_confirmed_then_refuted_after_a_rewrite(capsys):
    events = write_events(5)
    held = f"{events[3].pk}:{events[3].hash}"
    call_command("audit_verify", "--digest", held)
    assert f"intact up to event {events[3].pk}" in capsys.readouterr().out

    rewrite_from(events[1], details={"n": 1, "名字": "改过的值"})
    call_command("audit_verify")  # no digest recorded in the database: looks intact
    with pytest.raises(CommandError, match=f"BROKEN at event {events[3].pk}.*digest you hold"):
        call_command("audit_verify", "--digest", held)


def test_a_held_digest_beyond_the_chain_is_missing():
    events = write_events(2)
    with pytest.raises(CommandError, match="missing"):
        call_command("audit_verify", "--digest", f"{events[-1].pk + 5}:{'a' * 64}")


@pytest.mark.parametrize("bad", ["12", "x:abc", f"1:{'g' * 64}", f"-1:{'a' * 64}"])
def test_a_malformed_digest_is_refused(bad):
    with pytest.raises(CommandError, match="EVENT_ID:HASH"):
        call_command("audit_verify", f"--digest={bad}")
