"""The audit log explorer, its CSV export and chain verification, in the browser pages and
the API: who may (auditors and admins), what each filter shows, and bad input refused."""

from __future__ import annotations

import csv
import hashlib
import io
import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from audit import log as audit
from audit.events import EventType
from audit.models import AuditEvent, AuditExport, AuditExportStatus, ChainVerification
from retention.reports.audit_log_exports import build_audit_export
from retention.reports.verification_runs import run_verification
from tests.conftest import make_member

pytestmark = pytest.mark.django_db

READERS = {"auditor", "admin"}
EVERYONE = ["staff", "manager", "director", "security", "auditor", "admin"]


def client_for(member) -> Client:
    client = Client()
    if member is not None:
        client.force_login(member)
    return client


def api_for(member) -> APIClient:
    client = APIClient()
    if member is not None:
        client.force_authenticate(member)
    return client


@pytest.fixture
def log(cast, org):
    e = {}
    e["filed"] = audit.record(
        EventType.REQUEST_FILED,
        actor=cast.manager,
        target_type="retention.deletionrequest",
        target_id=7,
        department_id=org.hangzhou.pk,
        details={"reason": "清理过期的退款会话"},
    )
    e["hold"] = audit.record(
        EventType.HOLD_PLACED,
        actor=cast.security,
        target_type="retention.conversation",
        target_id=3,
        department_id=org.shenzhen.pk,
        details={"reason": "诉讼保全"},
    )
    e["policy"] = audit.record(
        EventType.POLICY_CHANGED, actor=cast.admin, target_type="retention.policy", target_id=1
    )
    return e


def csv_ids(content: bytes) -> list[int]:
    text = content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    return [int(r["id"]) for r in rows]


def event_ids_on_page(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-testid="event-(\d+)"', html)]


# --- who may ------------------------------------------------------------------------------

PAGE_CASES = [
    ("get", "/audit/"),
    ("get", "/audit/verify/"),
    ("get", "/audit/verify/status/"),
    ("get", "/audit/exports/"),
    ("post", "/audit/export/"),
    ("post", "/audit/verify/run/"),
]


@pytest.mark.parametrize("who", EVERYONE)
@pytest.mark.parametrize(("method", "url"), PAGE_CASES)
def test_only_auditors_and_admins_open_the_pages(cast, log, who, method, url):
    before = AuditEvent.objects.count()
    response = getattr(client_for(getattr(cast, who)), method)(url)
    if who in READERS:
        assert response.status_code in (200, 302), response.content[:300]
        return
    assert response.status_code == 403
    assert AuditEvent.objects.count() == before  # a refusal writes nothing
    assert not ChainVerification.objects.exists()
    assert "清理过期的退款会话" not in response.content.decode()


API_CASES = [
    ("get", "/api/v1/audit/events/"),
    ("get", "/api/v1/audit/verify/"),
    ("post", "/api/v1/audit/verify/"),
    ("get", "/api/v1/audit/digests/"),
]


@pytest.mark.parametrize("who", EVERYONE)
@pytest.mark.parametrize(("method", "url"), API_CASES)
def test_only_auditors_and_admins_use_the_api(
    cast, log, who, method, url, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        response = getattr(api_for(getattr(cast, who)), method)(url)
    if who in READERS:
        assert response.status_code in (200, 202), response.content[:300]
        return
    assert response.status_code == 403
    assert not ChainVerification.objects.exists()


@pytest.mark.parametrize("url", ["/audit/", "/audit/verify/"])
def test_anonymous_pages_redirect_to_sign_in(url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/signin/")


@pytest.mark.parametrize(("method", "url"), API_CASES)
def test_anonymous_api_calls_are_refused(method, url):
    assert getattr(APIClient(), method)(url).status_code == 401


def test_a_download_of_someone_elses_export_is_a_404(cast, log, settings):
    settings.QINGLI_AUDIT_EXPORT_DIRECT_MAX = 1
    client_for(cast.auditor).post("/audit/export/")
    export = AuditExport.objects.get()
    build_audit_export(export.pk)
    assert client_for(cast.admin).get(f"/audit/exports/{export.pk}/download/").status_code == 404
    assert client_for(cast.staff).get(f"/audit/exports/{export.pk}/download/").status_code == 403


# --- the explorer page --------------------------------------------------------------------


def test_the_page_lists_events_newest_first_with_links(cast, log):
    response = client_for(cast.auditor).get("/audit/")
    assert response.status_code == 200
    html = response.content.decode()
    assert event_ids_on_page(html) == [log["policy"].pk, log["hold"].pk, log["filed"].pk]
    assert 'href="/requests/7/"' in html
    assert 'href="/conversations/3/"' in html
    assert "Hangzhou store" in html  # the event's department by name


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("actor=security", ["hold"]),
        ("action=400", ["filed"]),
        ("request=7", ["filed"]),
        ("object_type=retention.conversation&object_id=3", ["hold"]),
        ("object_type=retention.policy", ["policy"]),
        ("q=退款", ["filed"]),
        ("q=保全", ["hold"]),
    ],
)
def test_each_filter_narrows_the_page(cast, log, query, expected):
    html = client_for(cast.admin).get(f"/audit/?{query}").content.decode()
    assert event_ids_on_page(html) == [log[name].pk for name in expected]


def test_the_department_filter_includes_sub_departments_unless_told_not_to(cast, log, org):
    client = client_for(cast.auditor)
    html = client.get(f"/audit/?department={org.east.pk}").content.decode()
    assert event_ids_on_page(html) == [log["filed"].pk]
    html = client.get(
        f"/audit/?department={org.east.pk}&include_subdepartments=false"
    ).content.decode()
    assert event_ids_on_page(html) == []


def test_the_time_filter(cast, log):
    since = log["hold"].created_at.isoformat()
    response = client_for(cast.auditor).get("/audit/", {"since": since})
    assert event_ids_on_page(response.content.decode()) == [log["policy"].pk, log["hold"].pk]


def test_older_and_newer_links_walk_the_log(cast):
    events = [audit.record(EventType.SIGN_IN).pk for _ in range(120)]
    client = client_for(cast.auditor)
    first = client.get("/audit/")
    assert event_ids_on_page(first.content.decode()) == events[:-51:-1]
    assert first.context["page"].newer is None
    older = client.get(f"/audit/?before={first.context['page'].older}")
    assert event_ids_on_page(older.content.decode()) == events[-51:-101:-1]
    newer = client.get(f"/audit/?after={older.context['page'].newer}")
    assert event_ids_on_page(newer.content.decode()) == events[:-51:-1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("since=2026-03-02&until=2026-03-01", "__all__"),
        ("until=0001-01-01", "until"),
        ("action=9999", "action"),
        ("department=abc", "department"),
        ("department=999999", "department"),
        ("request=-3", "request"),
        ("request=7&object_type=retention.conversation", "request"),
        ("object_id=3", "object_type"),
        ("object_type=DROP TABLE", "object_type"),
        ("q=" + "x" * 101, "q"),
        ("before=abc", "__all__"),
        ("after=-1", "__all__"),
    ],
)
def test_bad_filters_are_a_400_with_the_form_error(cast, log, query, field):
    count = AuditEvent.objects.count()
    response = client_for(cast.auditor).get(f"/audit/?{query}")
    assert response.status_code == 400
    form = response.context["form"]
    assert field in form.errors
    assert 'class="form-error"' in response.content.decode()
    assert AuditEvent.objects.count() == count


def test_the_chain_badge_says_intact_up_to_the_verified_event(cast, log):
    client = client_for(cast.auditor)
    assert 'data-testid="chain-badge"' in client.get("/audit/").content.decode()
    client.cookies["django_language"] = "en"
    run = ChainVerification.objects.create(requested_by=cast.auditor)
    run = run_verification(run.pk)
    html = client.get("/audit/").content.decode()
    assert f"Chain intact up to event {run.last_good_id}" in html
    assert client.get("/").status_code == 200  # every page renders the nav with the chain


# --- CSV export ---------------------------------------------------------------------------


def test_a_small_export_streams_exactly_the_filtered_events_and_is_audited(cast, log):
    response = client_for(cast.auditor).post("/audit/export/?q=保全")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content)
    assert csv_ids(body) == [log["hold"].pk]
    row = next(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert row["actor"] == "security"
    assert row["hash"] == log["hold"].hash
    assert "诉讼保全" in row["details"]
    event = AuditEvent.objects.order_by("-id").first()
    assert event.event_type == EventType.AUDIT_LOG_EXPORTED
    assert event.actor_id == cast.auditor.pk
    assert event.details["events"] == 1
    assert event.details["filters"]["text"] == "保全"


def test_an_unfiltered_export_does_not_include_its_own_event(cast, log):
    body = b"".join(client_for(cast.admin).post("/audit/export/").streaming_content)
    assert csv_ids(body) == [log["policy"].pk, log["hold"].pk, log["filed"].pk]


def test_a_bad_filter_exports_nothing(cast, log):
    count = AuditEvent.objects.count()
    response = client_for(cast.auditor).post("/audit/export/?since=nonsense")
    assert response.status_code == 400
    assert AuditEvent.objects.count() == count


def test_a_large_export_becomes_a_job_and_its_file_holds_exactly_the_view(
    cast, log, settings, django_capture_on_commit_callbacks
):
    settings.QINGLI_AUDIT_EXPORT_DIRECT_MAX = 1
    client = client_for(cast.auditor)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/audit/export/?action=400&department=999999")
    assert response.status_code == 400  # that department does not exist: nothing queued
    assert not callbacks
    extra = audit.record(EventType.REQUEST_FILED, actor=cast.manager, target_id=8)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/audit/export/?action=400")
    assert response.status_code == 302
    assert len(callbacks) == 1  # the job, enqueued on commit
    export = AuditExport.objects.get()
    assert export.status == AuditExportStatus.QUEUED
    requested = AuditEvent.objects.order_by("-id").first()
    assert requested.event_type == EventType.AUDIT_EXPORT_REQUESTED
    assert requested.target_id == str(export.pk)
    audit.record(EventType.REQUEST_FILED, actor=cast.manager, target_id=9)  # after: not in it

    build_audit_export(export.pk)
    export.refresh_from_db()
    assert export.status == AuditExportStatus.READY
    assert export.rows == 2
    assert "audit-export-" in client.get("/audit/").content.decode()

    download = client.get(f"/audit/exports/{export.pk}/download/")
    assert download.status_code == 200
    body = b"".join(download.streaming_content)
    assert csv_ids(body) == [extra.pk, log["filed"].pk]
    assert hashlib.sha256(body).hexdigest() == export.sha256 == download["X-Content-SHA256"]
    kinds = list(
        AuditEvent.objects.filter(target_type="audit.auditexport")
        .order_by("id")
        .values_list("event_type", flat=True)
    )
    assert kinds == [
        EventType.AUDIT_EXPORT_REQUESTED,
        EventType.AUDIT_EXPORT_COMPLETED,
        EventType.AUDIT_EXPORT_DOWNLOADED,
    ]


# --- the API ------------------------------------------------------------------------------


def test_the_api_filters_like_the_page(cast, log, org):
    client = api_for(cast.auditor)

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/v1/audit/events/?{query}")
        assert response.status_code == 200, response.content
        return [e["id"] for e in response.data["results"]]

    assert ids("") == [log["policy"].pk, log["hold"].pk, log["filed"].pk]
    assert ids("actor=manager") == [log["filed"].pk]
    assert ids("action=500") == [log["hold"].pk]
    assert ids(f"department={org.south.pk}") == [log["hold"].pk]
    assert ids("request=7") == [log["filed"].pk]
    assert ids("q=退款") == [log["filed"].pk]
    event = client.get("/api/v1/audit/events/?request=7").data["results"][0]
    assert event["link"] == "/requests/7/"
    assert event["action_label"]
    assert event["hash"] == log["filed"].hash


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=soon", "since"),
        ("action=1", "action"),
        ("object_id=4", "object_type"),
        ("since=0001-01-01T00:00", "since"),
        ("until=2101-01-01", "until"),
        ("until=9999-12-31T23:59:59", "until"),
    ],
)
def test_bad_api_filters_are_a_400(cast, log, query, field):
    response = api_for(cast.admin).get(f"/api/v1/audit/events/?{query}", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert field in response.json()
    if "-01" in query or "-31" in query:  # a date outside the range says which
        assert "between 1990-01-01 and 2100-12-31" in response.json()[field][0]["message"]


def test_the_api_cursor_walks_every_event_once_while_events_are_appended(cast):
    created = [audit.record(EventType.SIGN_IN).pk for _ in range(25)]
    client = api_for(cast.auditor)
    url = "/api/v1/audit/events/?page_size=10"
    seen = []
    while url:
        data = client.get(url).data
        seen.extend(e["id"] for e in data["results"])
        audit.record(EventType.SIGN_OUT)
        url = data["next"]
    assert seen == sorted(created, reverse=True)


def test_verify_api_runs_and_reports(cast, log, django_capture_on_commit_callbacks):
    client = api_for(cast.auditor)
    assert client.get("/api/v1/audit/verify/").data == {"latest": None, "pending": None}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/api/v1/audit/verify/")
    assert response.status_code == 202
    assert len(callbacks) == 1
    assert client.get("/api/v1/audit/verify/").data["pending"]["id"] == response.data["id"]
    run_verification(response.data["id"])
    latest = client.get("/api/v1/audit/verify/").data["latest"]
    assert latest["status"] == "intact"
    assert (
        latest["intact_up_to"]
        == AuditEvent.objects.filter(event_type=EventType.CHAIN_VERIFICATION_REQUESTED).get().pk
    )


def test_the_schema_lists_the_audit_endpoints(cast):
    schema = Client().get("/api/schema/?format=json").json()
    assert "/api/v1/audit/events/" in schema["paths"]
    params = {p["name"] for p in schema["paths"]["/api/v1/audit/events/"]["get"]["parameters"]}
    assert {"since", "actor", "action", "department", "request", "q", "cursor"} <= params
    assert "/api/v1/audit/verify/" in schema["paths"]


def test_the_verify_page_runs_a_verification(cast, log, django_capture_on_commit_callbacks):
    client = client_for(cast.admin)
    with django_capture_on_commit_callbacks(execute=False):
        assert client.post("/audit/verify/run/").status_code == 302
    run = ChainVerification.objects.get()
    assert 'data-testid="verify-pending"' in client.get("/audit/verify/").content.decode()
    run = run_verification(run.pk)
    client.cookies["django_language"] = "en"
    html = client.get("/audit/verify/").content.decode()
    assert f"Intact up to event {run.last_good_id}:" in html
    assert 'data-testid="verify-pending"' not in html


def test_a_member_without_a_role_is_denied(org):
    nobody = make_member("nobody", org.company)
    assert client_for(nobody).get("/audit/").status_code == 403
    assert api_for(nobody).get("/api/v1/audit/events/").status_code == 403
