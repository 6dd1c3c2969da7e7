"""Large audit-log CSV exports at rest: sealed under a data key of their own (the same
sealing as request exports), downloaded decrypted with the checksum of what comes back,
expired after the ``export_keep_days`` policy, and their keys moved by master-key rotation."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from audit import log as audit
from audit.event_exports import write_csv
from audit.events import EventType
from audit.models import AuditEvent, AuditExport, AuditExportStatus
from audit.selectors import EventFilter
from retention.exports.sealed import opened
from retention.records import crypto
from retention.records.crypto import DecryptionError
from retention.records.keys import data_keys_by_master_key, do_rotate_master_key
from retention.reports import audit_log_exports
from retention.reports.audit_log_exports import build_audit_export, expire_audit_exports

pytestmark = pytest.mark.django_db

SECRET = "诉讼保全：客户退款纠纷"


@pytest.fixture
def log(cast):
    audit.record(
        EventType.HOLD_PLACED,
        actor=cast.security,
        target_type="retention.conversation",
        target_id=3,
        details={"reason": SECRET},
    )
    audit.record(EventType.POLICY_CHANGED, actor=cast.admin, target_type="retention.policy")


def client_for(member) -> Client:
    client = Client()
    client.force_login(member)
    client.cookies["django_language"] = "en"
    return client


@pytest.fixture
def written(cast, log, settings):
    """A large export (more than the direct limit), written by its job."""
    settings.QINGLI_AUDIT_EXPORT_DIRECT_MAX = 1
    assert client_for(cast.auditor).post("/audit/export/").status_code == 302
    export = build_audit_export(AuditExport.objects.get().pk)
    assert export.status == AuditExportStatus.READY
    return export


def expected_csv(export: AuditExport) -> bytes:
    out = io.BytesIO()
    write_csv(EventFilter.from_json(export.filters), out)
    return out.getvalue()


def stored(export: AuditExport) -> bytes:
    with default_storage.open(export.file.name, "rb") as handle:
        return handle.read()


def download(member, export: AuditExport):
    return client_for(member).get(f"/audit/exports/{export.pk}/download/")


def downloads() -> int:
    return AuditEvent.objects.filter(event_type=EventType.AUDIT_EXPORT_DOWNLOADED).count()


def finished_days_ago(export: AuditExport, days: int) -> AuditExport:
    AuditExport.objects.filter(pk=export.pk).update(
        finished_at=timezone.now() - timedelta(days=days, minutes=1)
    )
    export.refresh_from_db()
    return export


# --- at rest and downloaded ---------------------------------------------------------------


def test_the_stored_file_is_sealed_and_holds_none_of_the_csv(written):
    plaintext = expected_csv(written)
    raw = stored(written)
    assert written.wrapped_key is not None
    assert raw.startswith(b"QEX1")
    for secret in (SECRET.encode(), b"action_label", b"policy changed", b"retention.policy"):
        assert secret in plaintext
        assert secret not in raw
    for event in AuditEvent.objects.all():
        assert event.hash.encode() not in raw


def test_the_download_is_the_exact_csv_and_its_checksum_matches(cast, written):
    plaintext = expected_csv(written)
    before = downloads()
    response = download(cast.auditor, written)
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body == plaintext
    assert hashlib.sha256(body).hexdigest() == written.sha256 == response["X-Content-SHA256"]
    assert int(response["Content-Length"]) == len(body) == written.size
    assert downloads() == before + 1


def test_the_file_and_key_open_only_as_an_audit_export(written):
    with pytest.raises(DecryptionError):  # not as a request export with the same id
        crypto.export_key(written.pk, written.wrapped_key)
    data_key = crypto.export_key(written.pk, written.wrapped_key, kind="audit-export")
    with pytest.raises(DecryptionError):
        b"".join(opened(default_storage.open(written.file.name, "rb"), data_key, written.pk))


def test_a_damaged_file_is_refused_and_not_counted_as_downloaded(cast, written):
    raw = bytearray(stored(written))
    raw[40] ^= 1
    default_storage.delete(written.file.name)
    default_storage.save(written.file.name, io.BytesIO(bytes(raw)))
    before = downloads()
    page = client_for(cast.auditor).get(f"/audit/exports/{written.pk}/download/", follow=True)
    assert "cannot be decrypted" in page.content.decode()
    assert downloads() == before


def test_a_small_export_is_streamed_directly_and_nothing_is_stored(cast, log):
    response = client_for(cast.auditor).post("/audit/export/")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert SECRET.encode() in body and body.startswith("\ufeffid,".encode())
    assert not AuditExport.objects.exists()


# --- expiry -------------------------------------------------------------------------------


def test_an_export_older_than_the_policy_expires_its_file_and_key(cast, written, settings):
    old = finished_days_ago(written, 31)
    name = old.file.name
    settings.QINGLI_AUDIT_EXPORT_DIRECT_MAX = 1
    client_for(cast.auditor).post("/audit/export/")
    recent = finished_days_ago(build_audit_export(AuditExport.objects.latest("pk").pk), 29)

    assert expire_audit_exports() == [old.pk]

    old.refresh_from_db()
    assert old.status == AuditExportStatus.EXPIRED and old.expired_at is not None
    assert old.wrapped_key is None and not old.file
    assert not default_storage.exists(name)
    assert len(old.sha256) == 64 and old.rows == 2  # what it held stays on record
    event = AuditEvent.objects.get(event_type=EventType.AUDIT_EXPORT_EXPIRED)
    assert event.actor_id is None and event.target_type == "audit.auditexport"
    assert event.target_id == str(old.pk)
    assert event.details["sha256"] == old.sha256 and event.details["keep_days"] == 30
    recent.refresh_from_db()
    assert recent.status == AuditExportStatus.READY and default_storage.exists(recent.file.name)

    assert expire_audit_exports() == []  # a second run changes nothing
    assert AuditEvent.objects.filter(event_type=EventType.AUDIT_EXPORT_EXPIRED).count() == 1


def test_an_expired_export_says_so_and_downloads_nothing(cast, written):
    finished_days_ago(written, 31)
    expire_audit_exports()
    before = downloads()
    client = client_for(cast.auditor)
    response = client.get(f"/audit/exports/{written.pk}/download/")
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "This export expired on" in page and "Ask for a new export" in page
    card = page.split('data-testid="audit-exports"')[1].split("</section>")[0]
    assert f"/audit/exports/{written.pk}/download/" not in card and "Expired" in card
    assert downloads() == before


def test_a_plaintext_file_from_before_sealing_expires_at_once(cast, written):
    AuditExport.objects.filter(pk=written.pk).update(wrapped_key=None)
    name = written.file.name
    assert expire_audit_exports() == [written.pk]
    assert not default_storage.exists(name)
    event = AuditEvent.objects.get(event_type=EventType.AUDIT_EXPORT_EXPIRED)
    assert event.details["encrypted"] is False


# --- master-key rotation ------------------------------------------------------------------


def test_rotation_rewraps_audit_export_keys(request, cast, written, settings):
    expected = expected_csv(written)
    settings.QINGLI_RETIRED_MASTER_KEYS = [settings.QINGLI_MASTER_KEY]
    settings.QINGLI_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
    crypto.forget_keys()
    request.addfinalizer(crypto.forget_keys)
    current = crypto.current_master_key_id()
    assert current.hex() not in data_keys_by_master_key()

    outcome = do_rotate_master_key(actor=cast.admin)

    assert outcome["rewrapped"] >= 1
    written.refresh_from_db()
    assert crypto.wrapped_with(bytes(written.wrapped_key)) == current
    assert set(data_keys_by_master_key()) == {current.hex()}
    settings.QINGLI_RETIRED_MASTER_KEYS = []  # the old master key is destroyed
    crypto.forget_keys()
    response = download(cast.auditor, written)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == expected
    assert do_rotate_master_key(actor=None)["rewrapped"] == 0


class _WorkerDied(BaseException):
    """A worker killed between saving the file and marking the export ready."""


def test_a_file_saved_by_a_run_that_died_is_removed_when_the_export_fails(
    cast, log, settings, monkeypatch
):
    settings.QINGLI_AUDIT_EXPORT_DIRECT_MAX = 1
    assert client_for(cast.auditor).post("/audit/export/").status_code == 302
    export = AuditExport.objects.get()
    AuditExport.objects.filter(pk=export.pk).update(attempts=audit_log_exports.MAX_ATTEMPTS - 1)

    def die(*args, **kwargs):
        raise _WorkerDied

    monkeypatch.setattr(type(audit_log_exports.LEASE), "finish", die)
    with pytest.raises(_WorkerDied):
        build_audit_export(export.pk)
    monkeypatch.undo()  # the next worker finds the lease as it is
    export.refresh_from_db()
    left = export.file.name
    assert left and default_storage.exists(left)  # named on the row before it was written

    later = timezone.now() + audit_log_exports.STALLED_AFTER + timedelta(minutes=1)
    assert audit_log_exports.LEASE.sweep(now=later) == []
    export.refresh_from_db()
    assert export.status == AuditExportStatus.FAILED
    assert not default_storage.exists(left)
