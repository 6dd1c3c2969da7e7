"""The ingest API and the do_ingest service behind it."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import path
from django.utils import translation
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from audit.events import EventType
from audit.models import AuditEvent
from retention.api.ingest import IngestMessagesView
from retention.models import Attachment, Conversation, DataKey, Message, Participant, Sensitivity
from retention.records.crypto import ConversationCipher
from retention.records.ingest import do_ingest
from retention.records.ingest_errors import IngestError
from retention.records.store import read_attachment, read_body
from tests.conftest import api_token

# The route as it will be wired in the project urls; the tests run against this module.
urlpatterns = [
    path("api/v1/ingest/messages/", IngestMessagesView.as_view(), name="api-ingest-messages"),
]
URL = "/api/v1/ingest/messages/"

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

PHONE_BODY = "收货人张三，电话 13800138000，麻烦改一下地址"
PDF = b"%PDF-1.4 invoice 2024-0301"


def conversation(**overrides: Any) -> dict[str, Any]:
    record = {
        "type": "conversation",
        "id": "c-1",
        "kind": "customer",
        "title": "买家 tb_88231 咨询",
        "department": "Company/East region/Hangzhou store",
        "participants": ["staff"],
        "customer": "tb_88231",
    }
    return {**record, **overrides}


def message(number: int = 1, **overrides: Any) -> dict[str, Any]:
    record = {
        "type": "message",
        "id": f"m-{number}",
        "conversation": "c-1",
        "sender": None,
        "sender_name": "tb_88231",
        "sent_at": f"2024-03-01T09:{30 + number:02d}:00+08:00",
        "body": "亲，我的订单什么时候发货？",
    }
    return {**record, **overrides}


def batch() -> list[dict[str, Any]]:
    return [
        conversation(),
        message(1),
        message(2, sender="staff", sender_name=None, body="亲，今天下午发货哦"),
        message(
            3,
            body=PHONE_BODY,
            attachments=[
                {
                    "name": "发票.pdf",
                    "content_type": "application/pdf",
                    "data_base64": base64.b64encode(PDF).decode(),
                }
            ],
        ),
    ]


def strip_nulls(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # sender_name=None in a helper call means "leave the key out".
    return [
        {k: v for k, v in r.items() if not (k == "sender_name" and v is None)}
        if isinstance(r, dict)
        else r
        for r in records
    ]


def token_client(member) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(member, second_factor=False)}")
    return client


def post(client: APIClient, records: list[Any], source: str = "qianniu"):
    body = {"source": source, "records": strip_nulls(records)}
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def counts() -> tuple[int, int, int, int]:
    return (
        Conversation.objects.count(),
        Message.objects.count(),
        Attachment.objects.count(),
        AuditEvent.objects.count(),
    )


@pytest.fixture(autouse=True)
def _english():
    # Messages are asserted in English; the default language is zh-hans.
    with translation.override("en"):
        yield


@pytest.fixture
def admin_client(cast) -> APIClient:
    return token_client(cast.admin)


# --------------------------------------------------------------------------- happy path


def test_it_stores_a_batch_encrypted_and_classified(admin_client, org, cast):
    response = post(admin_client, batch())

    assert response.status_code == 201, response.json()
    chat = Conversation.objects.get(source="qianniu", source_id="c-1")
    assert response.json() == {
        "conversations_created": 1,
        "messages_created": 3,
        "duplicates_skipped": 0,
        "conversation_ids": [chat.pk],
    }
    assert chat.kind == "customer"
    assert chat.department == org.hangzhou
    assert chat.external_party == "tb_88231"
    assert list(chat.participants.all()) == [cast.staff]
    assert chat.last_message_at is not None

    cipher = ConversationCipher.for_conversation(chat)
    rows = {m.source_id: m for m in Message.objects.filter(conversation=chat)}
    phone = rows["m-3"]
    assert PHONE_BODY.encode() not in bytes(phone.body)
    assert b"13800138000" not in bytes(phone.body)
    assert read_body(cipher, phone) == PHONE_BODY
    assert phone.sensitivity == Sensitivity.HIGH
    assert "mobile" in phone.sensitivity_reasons
    assert rows["m-1"].sender is None
    assert rows["m-1"].sender_name == "tb_88231"
    # A member sender without a sender_name shows under the member's name.
    assert rows["m-2"].sender == cast.staff
    assert rows["m-2"].sender_name == "Staff"
    assert rows["m-2"].sensitivity == Sensitivity.LOW

    attachment = Attachment.objects.get(message=phone)
    assert (attachment.name, attachment.content_type, attachment.size) == (
        "发票.pdf",
        "application/pdf",
        len(PDF),
    )
    with attachment.file.open("rb") as handle:
        assert PDF not in handle.read()
    assert read_attachment(cipher, attachment) == PDF


def test_it_writes_one_audit_event_with_the_counts(admin_client, cast):
    post(admin_client, batch())

    # (The admin's token was issued before: the ingest is the one event since.)
    event = AuditEvent.objects.exclude(event_type=EventType.TOKEN_ISSUED).get()
    chat = Conversation.objects.get()
    assert event.event_type == EventType.MESSAGES_INGESTED
    assert event.actor_id == cast.admin.pk
    assert event.ip_address == "127.0.0.1"
    assert event.target_type == "retention.conversation"
    assert event.target_id == str(chat.pk)
    assert event.department_id == chat.department_id
    assert event.details == {
        "source": "qianniu",
        "records": 4,
        "conversations_created": 1,
        "messages_created": 3,
        "duplicates_skipped": 0,
        "conversations": 1,
        "conversation_ids": [chat.pk],
    }


def test_posting_the_same_batch_again_creates_nothing(admin_client):
    assert post(admin_client, batch()).status_code == 201
    before = counts()

    again = post(admin_client, batch())

    assert again.status_code == 200
    assert again.json() == {
        "conversations_created": 0,
        "messages_created": 0,
        "duplicates_skipped": 4,
        "conversation_ids": [],
    }
    assert counts()[:3] == before[:3]
    event = AuditEvent.objects.order_by("-id").first()
    assert event.details["duplicates_skipped"] == 4
    assert event.details["messages_created"] == 0


def test_repeats_within_a_batch_are_stored_once(admin_client):
    records = [conversation(), conversation(title="again"), message(1), message(1), message(2)]

    response = post(admin_client, records)

    assert response.status_code == 201
    assert response.json()["messages_created"] == 2
    assert response.json()["duplicates_skipped"] == 2
    assert Conversation.objects.get().title == "买家 tb_88231 咨询"


def test_a_message_may_join_a_conversation_stored_earlier(admin_client):
    post(admin_client, [conversation(), message(1)])
    chat = Conversation.objects.get()

    response = post(admin_client, [message(2, body="还在吗？")])

    assert response.status_code == 201
    assert response.json()["conversation_ids"] == [chat.pk]
    assert chat.messages.count() == 2


def test_ids_are_unique_per_source_not_globally(admin_client):
    post(admin_client, [conversation(), message(1)])

    response = post(admin_client, [conversation(), message(1)], source="dingtalk")

    assert response.status_code == 201
    assert Conversation.objects.count() == 2


def test_a_department_may_be_named_by_id(admin_client, org):
    response = post(admin_client, [conversation(department=org.shenzhen.pk, customer="")])

    assert response.status_code == 201
    assert Conversation.objects.get().department == org.shenzhen


# --------------------------------------------------------------------------- bad input


def _long_body() -> dict[str, Any]:
    return {"body": "好" * 20_001}


BAD_RECORDS = {
    "unknown field": (1, {"colour": "red"}, "colour"),
    "body not a string": (1, {"body": 123}, "body"),
    "body too long": (1, _long_body(), "body"),
    "time without offset": (1, {"sent_at": "2024-03-01T09:30:00"}, "sent_at"),
    "time not a date": (1, {"sent_at": "yesterday"}, "sent_at"),
    "time before the database's range": (1, {"sent_at": "0001-01-01T00:00:00+08:00"}, "sent_at"),
    "time in the future": (1, {"sent_at": "2999-01-01T00:00:00+08:00"}, "sent_at"),
    "time at the end of year 9999": (1, {"sent_at": "9999-12-31T23:59:59-08:00"}, "sent_at"),
    "unknown sender": (1, {"sender": "nobody"}, "sender"),
    "customer without a name": (1, {"sender": None, "sender_name": None}, "sender_name"),
    "unknown conversation": (1, {"conversation": "c-404"}, "conversation"),
    "bad base64": (
        1,
        {"attachments": [{"name": "a.png", "content_type": "image/png", "data_base64": "%%"}]},
        "attachments[0].data_base64",
    ),
    "unknown department id": (0, {"department": 999_999}, "department"),
    "unknown department path": (0, {"department": "Company/Nowhere"}, "department"),
    "department of the wrong type": (0, {"department": True}, "department"),
    "unknown participant": (0, {"participants": ["staff", "ghost"]}, "participants[1]"),
    "participants not a list": (0, {"participants": "staff"}, "participants"),
    "unknown kind": (0, {"kind": "channel"}, "kind"),
    "customer on a group chat": (0, {"kind": "group"}, "customer"),
    "id not a string": (0, {"id": 17}, "id"),
}


@pytest.mark.parametrize("case", BAD_RECORDS, ids=list(BAD_RECORDS))
def test_a_bad_record_is_named_and_nothing_is_written(admin_client, case):
    index, change, field = BAD_RECORDS[case]
    records = [conversation(), message(1), message(2)]
    records[index] = {**records[index], **change}
    records = strip_nulls(records)
    before = counts()

    response = post(admin_client, records)

    assert response.status_code == 400
    body = response.json()
    assert "nothing was written" in body["detail"]
    assert {"record": index, "field": field} in [
        {"record": e["record"], "field": e["field"]} for e in body["errors"]
    ], body
    error = next(e for e in body["errors"] if e["field"] == field)
    assert error["message"]
    if isinstance(records[index]["id"], str):
        assert error["id"] == records[index]["id"]
    assert counts() == before


def test_every_problem_is_reported_at_once(admin_client):
    records = [conversation(), message(1, body=5), message(2, sender="nobody"), "junk", {}]

    response = post(admin_client, records)

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(e["record"], e["field"]) for e in errors] == [
        (1, "body"),
        (2, "sender"),
        (3, None),
        (4, "type"),
    ]
    assert Message.objects.count() == 0


def test_malformed_json_is_refused(admin_client):
    before = counts()

    response = admin_client.post(
        URL, data='{"source": "qianniu", "records": [', content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["detail"]
    assert response.json()["errors"][0]["field"] is None
    assert counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": "qianniu", "records": [], "dry_run": True}, "dry_run"),
        ({"source": "qianniu", "records": []}, "records"),
        ({"source": 7, "records": [conversation()]}, "source"),
        ({"records": [conversation()]}, "source"),
        ({"source": "qianniu", "records": {"type": "conversation"}}, "records"),
        ([conversation()], None),
    ],
)
def test_a_bad_request_body_is_refused(admin_client, body, field):
    response = admin_client.post(URL, data=json.dumps(body), content_type="application/json")

    assert response.status_code == 400
    assert field in [e["field"] for e in response.json()["errors"]]
    assert Conversation.objects.count() == 0


def test_too_many_records_are_refused(admin_client, settings):
    settings.QINGLI_MAX_INGEST_BATCH = 2
    before = counts()

    response = post(admin_client, [conversation(), message(1), message(2)])

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "records"
    assert "at most 2" in response.json()["errors"][0]["message"]
    assert counts() == before


def test_an_attachment_over_the_size_limit_is_refused(admin_client, settings):
    settings.QINGLI_MAX_ATTACHMENT_BYTES = 10
    attachment = {"name": "a.bin", "data_base64": base64.b64encode(b"x" * 11).decode()}

    response = post(admin_client, [conversation(), message(1, attachments=[attachment])])

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "attachments[0].data_base64"
    assert Message.objects.count() == 0


def test_a_crypto_shredded_conversation_takes_no_new_messages(admin_client):
    post(admin_client, [conversation(), message(1)])
    DataKey.objects.update(wrapped_key=None)

    response = post(admin_client, [message(2)])

    assert response.status_code == 400
    assert "crypto-shredded" in response.json()["errors"][0]["message"]
    # Re-sending what is already stored stays harmless.
    assert post(admin_client, [message(1)]).status_code == 200


# --------------------------------------------------------------------------- permission


def test_staff_may_not_ingest(cast):
    client = token_client(cast.staff)
    before = counts()

    response = post(client, batch())

    assert response.status_code == 403
    assert counts() == before


def test_anonymous_callers_may_not_ingest(cast):
    response = post(APIClient(), batch())

    assert response.status_code == 401
    assert Conversation.objects.count() == 0


def test_the_service_checks_permission_itself(cast):
    with pytest.raises(PermissionDenied):
        do_ingest(actor=cast.manager, source="qianniu", records=strip_nulls(batch()))
    assert Conversation.objects.count() == 0


def test_the_service_raises_an_ingest_error_with_record_labels(cast):
    records = strip_nulls(batch())
    records[2] = {**records[2], "body": None}

    with pytest.raises(IngestError) as caught:
        do_ingest(
            actor=cast.admin, source="qianniu", records=records, record_labels=[10, 11, 12, 13]
        )

    assert caught.value.errors == [
        {"record": 12, "id": "m-2", "field": "body", "message": "This field may not be null."}
    ]
    assert not AuditEvent.objects.exists()


def test_the_service_does_not_change_the_records_it_is_given(cast):
    records = strip_nulls(batch())
    original = copy.deepcopy(records)

    do_ingest(actor=cast.admin, source="qianniu", records=records)

    assert records == original


# --------------------------------------------------------------------------- schema


def test_the_openapi_schema_describes_the_endpoint():
    schema = SchemaGenerator(patterns=urlpatterns).get_schema(request=None, public=True)

    operation = schema["paths"][URL]["post"]
    assert set(operation["responses"]) >= {"200", "201", "400"}
    components = schema["components"]["schemas"]
    discriminator = components["IngestRecordRequest"]["discriminator"]
    assert discriminator["propertyName"] == "type"
    assert set(discriminator["mapping"]) == {"conversation", "message"}
    assert "sender_name" in components["MessageRecordRequest"]["properties"]


def test_participants_are_members_once(admin_client, cast):
    post(admin_client, [conversation(participants=["staff", "staff", "manager"])])

    assert Participant.objects.count() == 2


def test_records_may_come_in_any_order(admin_client):
    response = post(admin_client, [message(1), message(2), conversation()])

    assert response.status_code == 201
    assert response.json()["messages_created"] == 2


def test_an_oversized_request_is_refused_before_parsing(admin_client, settings):
    settings.QINGLI_MAX_INGEST_BODY_BYTES = 100

    response = post(admin_client, batch())

    assert response.status_code == 413
    assert "at most 100 bytes" in response.json()["detail"]
    assert Conversation.objects.count() == 0


def test_a_batch_larger_than_other_api_bodies_is_read(admin_client, settings):
    settings.QINGLI_MAX_API_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    assert post(admin_client, batch()).status_code == 201
