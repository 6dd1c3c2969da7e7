"""The audit app's jobs on a real ``manage.py rqworker default`` over real Redis and
PostgreSQL: a large CSV export of the log and a verification asked for in the browser."""

from __future__ import annotations

import csv
import hashlib
import io

import pytest
from django.test import Client

from audit import log as audit
from audit.events import EventType
from audit.models import AuditEvent, AuditExport, AuditExportStatus, ChainVerification
from tests.conftest import run_worker_burst

pytestmark = [pytest.mark.queue, pytest.mark.django_db(transaction=True)]


def test_a_large_export_and_a_verification_run_on_a_real_worker(
    redis_queue_connection, cast, settings
):
    settings.QINGLI_AUDIT_EXPORT_DIRECT_MAX = 5
    wanted = [
        audit.record(EventType.HOLD_PLACED, actor=cast.security, target_id=i).pk for i in range(8)
    ]
    audit.record(EventType.SIGN_IN, actor=cast.staff)
    client = Client()
    client.force_login(cast.auditor)

    response = client.post(f"/audit/export/?action={int(EventType.HOLD_PLACED)}")
    assert response.status_code == 302
    assert client.post("/audit/verify/run/").status_code == 302
    export = AuditExport.objects.get()
    run = ChainVerification.objects.get()
    assert export.status == AuditExportStatus.QUEUED

    run_worker_burst("default", MEDIA_ROOT=str(settings.MEDIA_ROOT))

    export.refresh_from_db()
    assert export.status == AuditExportStatus.READY, export.error
    assert export.rows == len(wanted)
    download = client.get(f"/audit/exports/{export.pk}/download/")
    body = b"".join(download.streaming_content)
    assert hashlib.sha256(body).hexdigest() == export.sha256
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert [int(r["id"]) for r in rows] == sorted(wanted, reverse=True)

    run.refresh_from_db()
    assert run.status == "intact"
    assert run.last_good_id == run.up_to_id
    assert run.events_checked == AuditEvent.objects.filter(id__lte=run.up_to_id).count()
    assert AuditEvent.objects.filter(event_type=EventType.AUDIT_EXPORT_COMPLETED).count() == 1
    assert AuditEvent.objects.filter(event_type=EventType.CHAIN_VERIFIED).count() == 1
    client.cookies["django_language"] = "en"
    assert f"Intact up to event {run.last_good_id}" in client.get("/audit/verify/").content.decode()
