from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from audit import log as audit
from audit.chain import verify_chain
from audit.events import EventType
from audit.log import GENESIS_HASH
from audit.models import AuditEvent
from tests.conftest import on_postgres

pytestmark = pytest.mark.django_db


def write_events(n: int, actor=None) -> list[AuditEvent]:
    return [
        audit.record(
            EventType.CONFIG_CHANGED, actor=actor, target_id=i, details={"n": i, "名字": "值"}
        )
        for i in range(n)
    ]


def test_each_event_links_to_the_previous_one(cast):
    first, second, third = write_events(3, actor=cast.admin)
    assert first.prev_hash == GENESIS_HASH  # the fixtures write no events
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert third.actor_name == "admin"


def test_verify_confirms_an_untouched_chain(cast):
    write_events(5, actor=cast.manager)
    report = verify_chain()
    assert report.intact
    assert report.events_checked == AuditEvent.objects.count()
    assert report.last_good_id == AuditEvent.objects.order_by("-id").first().pk


def test_the_database_refuses_to_update_an_event():
    (event,) = write_events(1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(details={"n": 999})
    event.refresh_from_db()
    assert event.details["n"] == 0


def test_the_database_refuses_to_delete_an_event():
    (event,) = write_events(1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_raw_sql_cannot_change_the_log_either():
    (event,) = write_events(1)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET actor_name = 'mallory' WHERE id = %s", [event.pk]
        )


def _tamper(sql: str, params: list) -> None:
    """Change a row behind the application's back, as a database superuser could."""
    with connection.cursor() as cursor:
        if on_postgres():
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
            cursor.execute(sql, params)
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")
        else:
            cursor.execute("DROP TRIGGER audit_event_no_update")
            cursor.execute("DROP TRIGGER audit_event_no_delete")
            cursor.execute(sql, params)


def test_verify_names_an_event_changed_behind_the_applications_back():
    events = write_events(6)
    victim = events[3]
    _tamper(
        "UPDATE audit_auditevent SET details = %s WHERE id = %s",
        ['{"n": 42, "名字": "值"}', victim.pk],
    )
    report = verify_chain()
    assert not report.intact
    assert report.broken_id == victim.pk
    assert report.last_good_id == events[2].pk
    assert "content" in report.reason


def test_verify_names_the_event_after_a_deleted_one():
    events = write_events(5)
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[2].pk])
    report = verify_chain()
    assert not report.intact
    assert report.broken_id == events[3].pk
    assert "link" in report.reason


def test_audit_verify_command_reports_intact_and_broken(capsys):
    events = write_events(3)
    call_command("audit_verify")
    assert "intact" in capsys.readouterr().out
    _tamper("UPDATE audit_auditevent SET actor_name = 'mallory' WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError, match=f"BROKEN at event {events[1].pk}"):
        call_command("audit_verify")


def test_verify_job_records_its_outcome():
    from retention.reports.verification_runs import verify_audit_chain

    write_events(2)
    outcome = verify_audit_chain()
    assert outcome["intact"] is True
    event = AuditEvent.objects.order_by("-id").first()
    assert event.event_type == EventType.CHAIN_VERIFIED
    assert event.details["events_checked"] == outcome["events_checked"]


def test_postgresql_refuses_to_truncate_the_log_without_the_test_switch():
    if not on_postgres():
        pytest.skip("TRUNCATE exists on PostgreSQL only")
    write_events(1)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL qingli.allow_truncate = 'off'")
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            cursor.execute("TRUNCATE audit_auditevent")
    assert AuditEvent.objects.exists()


def test_two_events_cannot_extend_the_same_head():
    first, second = write_events(2)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.create(
            created_at=second.created_at,
            event_type=EventType.CONFIG_CHANGED,
            details={},
            prev_hash=first.hash,  # a fork beside `second`
            hash="f" * 64,
        )


@pytest.mark.parametrize(
    ("ip", "details"),
    [
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", {"n": 1}),
        ("127.0.0.1", {"big": 1e20, "small": 0.1, "nested": [1.5, {"x": -2.5e-8}]}),
        ("::1", {"name": "a\x00b", "名字": "值"}),
        ("not an address", {"tuple": (1, 2), "set": {3}}),
    ],
)
def test_what_reads_back_hashes_the_same(ip, details):
    event = audit.record(
        EventType.SIGN_IN_FAILED, target_id="x\x00y", ip_address=ip, details=details
    )
    assert verify_chain().intact
    event.refresh_from_db()
    assert event.target_id == "x\ufffdy"
