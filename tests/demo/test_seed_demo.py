"""``manage.py seed_demo``: the demo company, its sign-ins and its chat records.

Runs on whichever database the suite uses: on PostgreSQL the messages go in through
COPY (asserted below), on SQLite through bulk_create, and every other assertion holds
for both.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, F, Max, Min
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.events import EventType
from audit.models import AuditEvent
from retention.demo.pii import bank_card, id_card
from retention.demo.plans import Window, allocate
from retention.demo.reset import DEMO_SOURCE
from retention.models import (
    Attachment,
    Conversation,
    ConversationKind,
    Department,
    Member,
    Message,
    Participant,
    Sensitivity,
    SignInDay,
)
from retention.policies import get_policy
from retention.records.crypto import ConversationCipher
from retention.records.store import NewMessage, build_message, read_attachment
from tests.conftest import make_chat, on_postgres

pytestmark = pytest.mark.django_db

N = 2000
PASSWORD = "demo-pass-2026"
CJK = re.compile(r"[\u4e00-\u9fff]")
SIGN_INS = {
    # username: (role, department name)
    "admin": ("admin", "清风电商"),
    "admin2": ("admin", "清风电商"),
    "security": ("security", "清风电商"),
    "auditor": ("auditor", "清风电商"),
    "director": ("manager", "清风电商"),
    "manager": ("manager", "华东区"),
    "manager2": ("manager", "华南区"),
    "staff": ("staff", None),
    "staff2": ("staff", None),
}


def seed(messages: int = N, *args: str, seed: int = 7) -> str:
    out = StringIO()
    call_command(
        "seed_demo",
        "--messages",
        str(messages),
        "--password",
        PASSWORD,
        "--seed",
        str(seed),
        *args,
        stdout=out,
    )
    return out.getvalue()


def demo_messages():
    return Message.objects.filter(conversation__source=DEMO_SOURCE)


def plaintexts(limit: int = 60) -> list[tuple[str, str, str]]:
    rows = []
    messages = demo_messages().select_related("conversation").order_by("conversation_id", "id")
    ciphers: dict[int, ConversationCipher] = {}
    for message in messages[:limit]:
        conversation = message.conversation
        cipher = ciphers.setdefault(
            conversation.pk, ConversationCipher.for_conversation(conversation)
        )
        rows.append((conversation.title, message.sender_name, cipher.decrypt_text(message.body)))
    return rows


# --------------------------------------------------------------------------- the organisation


def test_organisation_has_three_levels_and_chinese_names():
    seed()
    departments = Department.objects.all()
    assert departments.count() >= 10
    assert len(set(departments.values_list("depth", flat=True))) >= 3
    root = Department.objects.get(parent__isnull=True)
    assert root.name == "清风电商"
    regions = list(root.children.all())
    assert {"华东区", "华南区", "华北区"} <= {r.name for r in regions}
    for region in regions:
        # Every region has stores under it.
        assert region.children.exists(), region.name
    assert all(CJK.search(name) for name in departments.values_list("name", flat=True))
    assert Department.objects.filter(depth=3, name__in=["客服组", "仓储组"]).exists()


def sign_in_request():
    # The product always authenticates a request: the lockout counts by its address.
    return RequestFactory().post("/signin/")


def test_the_eight_sign_ins_have_their_roles_places_and_password():
    seed()
    members = {m.username: m for m in Member.objects.filter(username__in=SIGN_INS)}
    assert set(members) == set(SIGN_INS)
    for username, (role, department_name) in SIGN_INS.items():
        member = members[username]
        assert list(member.groups.values_list("name", flat=True)) == [role], username
        if department_name:
            assert member.department.name == department_name, username
        assert authenticate(sign_in_request(), username=username, password=PASSWORD) == member
        # Not authenticate(): nine wrong tries from one address would (rightly) trip the
        # sign-in lockout, which tests/access/test_signin_lockout.py covers.
        assert not member.check_password("wrong")
        assert CJK.search(member.display_name)
    assert members["director"].department.parent_id is None
    # Each region manager's subtree holds the store of "their" staff member.
    assert members["manager"].department.contains(members["staff"].department)
    assert members["manager2"].department.contains(members["staff2"].department)
    assert not members["manager"].department.contains(members["staff2"].department)
    assert members["staff"].department.parent == members["manager"].department
    assert members["admin"].is_staff and not members["admin"].is_superuser
    assert not any(m.is_superuser for m in members.values())


def test_generated_members_staff_every_store_with_a_manager_each():
    seed()
    stores = Department.objects.filter(depth=2)
    for store in stores:
        people = Member.objects.filter(department__path__startswith=store.path)
        assert people.filter(groups__name="staff").exists(), store.name
        assert people.filter(groups__name="manager", department=store).exists(), store.name
    generated = Member.objects.exclude(username__in=SIGN_INS)
    assert generated.count() >= 2 * stores.count()
    assert all(CJK.search(m.display_name) for m in generated)
    assert all(re.fullmatch(r"[a-z]+[0-9]*", m.username) for m in generated)
    member = generated.first()
    assert authenticate(sign_in_request(), username=member.username, password=PASSWORD) == member


def test_every_demo_member_signed_in_on_each_of_the_last_30_days():
    seed()
    today = timezone.localdate()
    expected = {today - timedelta(days=i) for i in range(30)}
    for member in Member.objects.all():
        days = set(SignInDay.objects.filter(member=member).values_list("day", flat=True))
        assert days == expected, member.username


# --------------------------------------------------------------------------- the chat records


def test_exactly_n_messages_in_every_kind_of_conversation():
    seed()
    assert Message.objects.count() == N
    kinds = set(Conversation.objects.values_list("kind", flat=True))
    assert kinds == {ConversationKind.CUSTOMER, ConversationKind.GROUP, ConversationKind.DIRECT}
    customer = Conversation.objects.filter(kind=ConversationKind.CUSTOMER).first()
    assert customer.external_party and customer.external_party == customer.title
    assert Conversation.objects.filter(title__startswith="供应商对接群").exists()
    # No conversation without messages, and each knows its first and last message.
    assert not Conversation.objects.filter(messages__isnull=True).exists()
    spans = Conversation.objects.annotate(
        first=Min("messages__sent_at"), last=Max("messages__sent_at")
    )
    assert all(c.last_message_at == c.last and c.created_at == c.first for c in spans)
    assert not Participant.objects.exclude(joined_at=F("conversation__created_at")).exists()


def test_staff_and_staff2_take_part_in_every_kind_of_conversation():
    seed()
    for username in ("staff", "staff2"):
        taken = Participant.objects.filter(member__username=username)
        assert taken.count() >= 10, username
        kinds = set(taken.values_list("conversation__kind", flat=True))
        assert kinds == {"customer", "group", "direct"}, username
        assert Message.objects.filter(sender__username=username).count() >= 20


def test_messages_spread_over_half_a_year_before_now():
    seed()
    now = timezone.now()
    times = demo_messages().values_list("sent_at", flat=True)
    assert max(times) < now
    assert min(times) > now - timedelta(days=185)
    assert max(times) - min(times) > timedelta(days=120)
    hours = [timezone.localtime(t).hour for t in times]
    working = sum(8 <= h < 23 for h in hours)
    assert working / len(hours) > 0.85


def test_sensitivity_levels_are_mixed_with_most_low():
    seed()
    levels = dict(demo_messages().values_list("sensitivity").annotate(n=Count("pk")).order_by())
    assert levels.get(Sensitivity.HIGH, 0) > 0
    assert levels.get(Sensitivity.MEDIUM, 0) > 0
    assert levels[Sensitivity.LOW] > N / 2
    high_reasons = {
        reason
        for reasons in demo_messages()
        .filter(sensitivity=Sensitivity.HIGH)
        .values_list("sensitivity_reasons", flat=True)
        for reason in reasons
    }
    assert {"mobile", "address"} <= high_reasons


def test_bodies_decrypt_to_chinese_text():
    seed()
    texts = plaintexts(200)
    assert len(texts) == 200
    assert sum(bool(CJK.search(body)) for _, _, body in texts) > 150
    message = demo_messages().first()
    assert message.body_bytes == len(
        ConversationCipher.for_conversation(message.conversation).decrypt(message.body)
    )


def test_rows_are_exactly_what_the_store_would_write():
    """Same classification, same fields, same encryption format as build_message."""
    seed()
    skip = {"id", "body", "ingested_at"}
    fields = [f for f in Message._meta.concrete_fields if f.name not in skip]
    checked = 0
    for message in demo_messages().select_related("conversation", "sender")[:300]:
        conversation = message.conversation
        cipher = ConversationCipher.for_conversation(conversation)
        text = cipher.decrypt_text(message.body)
        expected = build_message(
            conversation,
            cipher,
            NewMessage(
                sender_name=message.sender_name,
                sent_at=message.sent_at,
                body=text,
                sender=message.sender,
            ),
        )
        for f in fields:
            assert getattr(message, f.attname) == getattr(expected, f.attname), f.name
        assert cipher.decrypt_text(expected.body) == text
        # nonce ‖ ciphertext ‖ 16-byte tag, like the store's.
        assert len(bytes(message.body)) == len(expected.body)
        checked += 1
    assert checked == 300


def test_some_messages_carry_small_encrypted_attachments():
    seed(4000)
    attachments = Attachment.objects.select_related("conversation")
    assert attachments.exists()
    for attachment in attachments:
        cipher = ConversationCipher.for_conversation(attachment.conversation)
        content = read_attachment(cipher, attachment)
        assert hashlib.sha256(content).hexdigest() == attachment.sha256
        assert len(content) == attachment.size < 2000
        assert attachment.message.conversation_id == attachment.conversation_id
    assert attachments.count() < 4000 * 0.02


def test_valid_checksums_in_generated_id_and_bank_card_numbers():
    import random

    rng = random.Random(3)
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    for _ in range(200):
        number = id_card(rng)
        total = sum(int(d) * w for d, w in zip(number[:17], weights, strict=True))
        assert "10X98765432"[total % 11] == number[17]
        _, card = bank_card(rng)
        digits = [int(d) for d in card.replace(" ", "")][::-1]
        luhn = sum(
            d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(digits)
        )
        assert luhn % 10 == 0


def test_allocation_adds_up_exactly():
    assert sum(allocate(1000, [1.0, 2.5, 0.3, 7])) == 1000
    assert allocate(2, [1.0, 5.0, 3.0]) == [0, 1, 1]
    assert min(allocate(10, [1e-6, 100.0])) == 1


# --------------------------------------------------------------------------- the run itself


def test_summary_and_audit_event():
    output = seed()
    assert "Demo data ready." in output
    assert f"messages        {N:,}" in output
    for username in SIGN_INS:
        assert re.search(rf"^\s+{username}\s+\S+\s+\S+\s+{PASSWORD}\s*$", output, re.M), username
    assert "messages/s" in output
    event = AuditEvent.objects.get(event_type=EventType.DEMO_DATA_SEEDED)
    assert event.actor_id is None
    assert event.details["messages"] == N
    assert event.details["members"] == Member.objects.count()
    assert event.details["departments"] == Department.objects.count()
    assert sum(event.details["sensitivity"].values()) == N
    assert event.details["sensitivity"]["high"] == (
        Message.objects.filter(sensitivity=Sensitivity.HIGH).count()
    )


def test_the_demo_switches_the_second_factor_off_and_says_so():
    assert get_policy("require_second_factor") is True
    output = seed(0)
    assert get_policy("require_second_factor") is False
    assert "Two-factor authentication is NOT enforced in this demo" in output
    assert "require_second_factor" in output
    change = AuditEvent.objects.get(event_type=EventType.POLICY_CHANGED)
    assert change.actor_id is None
    assert change.details == {
        "key": "require_second_factor",
        "old": True,
        "new": False,
        "via": "seed_demo",
    }


def test_messages_go_in_through_copy_on_postgresql_and_bulk_create_elsewhere():
    output = seed(500)
    if on_postgres():
        assert connection.vendor == "postgresql"
        assert "written with    PostgreSQL COPY" in output
    else:
        assert "written with    bulk_create" in output
    assert Message.objects.count() == 500


@pytest.mark.skipif(not on_postgres(), reason="the COPY path exists only on PostgreSQL")
def test_copy_path_in_several_chunks_on_postgresql():
    out = StringIO()
    call_command(
        "seed_demo",
        "--messages",
        "2500",
        "--password",
        PASSWORD,
        "--chunk-size",
        "1000",
        stdout=out,
    )
    assert Message.objects.count() == 2500
    assert out.getvalue().count(" / 2,500 messages") == 3
    # Ids came from the sequences, so ordinary inserts after the seed still work.
    department = Department.objects.create(name="Later")
    conversation = make_chat(department, [], ["稍后的消息"])
    assert (
        conversation.pk
        > Conversation.objects.exclude(pk=conversation.pk).aggregate(m=Max("pk"))["m"]
    )


def test_the_same_seed_gives_the_same_talk():
    seed(800, seed=11)
    first = plaintexts()
    first_window = Window.ending_today().start
    first_times = list(demo_messages().order_by("conversation_id", "id").values_list("sent_at"))
    seed(800, "--reset", seed=11)
    assert plaintexts() == first
    if Window.ending_today().start == first_window:  # not across midnight
        again = list(demo_messages().order_by("conversation_id", "id").values_list("sent_at"))
        assert again == first_times
    seed(800, "--reset", seed=12)
    assert plaintexts() != first


def test_zero_messages_gives_the_organisation_only():
    output = seed(0)
    assert Member.objects.filter(username__in=SIGN_INS).count() == len(SIGN_INS)
    assert not Conversation.objects.exists()
    assert "messages        0" in output


# --------------------------------------------------------------------------- refusing and resetting


def test_refuses_to_run_over_demo_data_without_reset():
    seed()
    before = (Member.objects.count(), Conversation.objects.count(), Message.objects.count())
    with pytest.raises(CommandError, match="already has demo data.*--reset"):
        seed(100)
    after = (Member.objects.count(), Conversation.objects.count(), Message.objects.count())
    assert after == before


def test_reset_replaces_demo_data_and_keeps_everything_else():
    other = Department.objects.create(name="Other company")
    outsider = Member.objects.create_user("outsider", password="x", department=other)
    kept = make_chat(other, [outsider], ["这条不是演示数据", "这条也不是"])
    seed()
    events_before = AuditEvent.objects.count()

    output = seed(700, "--reset")

    assert "Removing the earlier demo data" in output
    assert demo_messages().count() == 700
    assert Message.objects.filter(conversation=kept).count() == 2
    assert Member.objects.filter(username="outsider").exists()
    assert Department.objects.filter(name="Other company").exists()
    assert Department.objects.filter(parent__isnull=True, name="清风电商").count() == 1
    assert Member.objects.filter(username="staff").count() == 1
    # The audit log is append-only: the reset added to it and removed nothing.
    assert AuditEvent.objects.count() == events_before + 1
    assert AuditEvent.objects.filter(event_type=EventType.DEMO_DATA_SEEDED).count() == 2
    reseeded = AuditEvent.objects.filter(event_type=EventType.DEMO_DATA_SEEDED).first()
    assert reseeded.details["reset"]["messages"] == N


def test_reset_removes_old_attachment_files_once_committed(django_capture_on_commit_callbacks):
    seed(4000)
    files = [Path(a.file.path) for a in Attachment.objects.all()]
    assert files and all(f.exists() for f in files)
    with django_capture_on_commit_callbacks(execute=True):
        seed(300, "--reset")
    assert not any(f.exists() for f in files)


def test_reset_when_only_demo_data_exists_is_clean():
    seed()
    with CaptureQueriesContext(connection) as queries:
        seed(300, "--reset")
    if on_postgres():
        # Nothing but demo data: the messages go with one TRUNCATE, not row by row.
        assert any(q["sql"].startswith("TRUNCATE") for q in queries.captured_queries)
    assert Message.objects.count() == 300
    assert (
        Attachment.objects.count()
        == Attachment.objects.filter(conversation__source=DEMO_SOURCE).count()
    )
    assert Member.objects.filter(email__endswith="@demo.qingli.invalid").count() == (
        Member.objects.count()
    )


# --------------------------------------------------------------------------- bad arguments


def test_negative_message_count_is_refused():
    with pytest.raises(CommandError, match="--messages must be 0 or more"):
        call_command("seed_demo", "--messages", "-1", "--password", PASSWORD, stdout=StringIO())
    assert not Department.objects.exists()


def test_missing_password_is_refused():
    with pytest.raises(CommandError, match="--password is required"):
        call_command("seed_demo", "--messages", "10", stdout=StringIO())
    with pytest.raises(CommandError, match="--password is required"):
        call_command("seed_demo", "--messages", "10", "--password", "", stdout=StringIO())
    assert not Member.objects.exists()


def test_missing_message_count_is_refused():
    with pytest.raises(CommandError, match="--messages"):
        call_command("seed_demo", "--password", PASSWORD, stdout=StringIO())


def test_sign_in_names_taken_by_real_members_are_refused(cast):
    before = Department.objects.count()
    with pytest.raises(CommandError, match="already belong to members that are not demo data"):
        seed(100)
    assert Department.objects.count() == before
    assert not Conversation.objects.filter(source=DEMO_SOURCE).exists()


def test_supplier_groups_are_protected():
    seed()
    suppliers = Conversation.objects.filter(title__startswith="供应商对接群")
    assert suppliers.exists()
    assert not suppliers.filter(is_protected=False).exists()
    assert (
        not Conversation.objects.exclude(title__startswith="供应商对接群")
        .filter(is_protected=True)
        .exists()
    )
