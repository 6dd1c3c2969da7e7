"""The explorer's selector: each filter narrows to exactly the right events, and keyset
pages neither repeat nor skip an event while new ones are appended."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit import log as audit
from audit.events import EventType
from audit.models import AuditEvent
from audit.selectors import EventFilter, event_page, filtered_events

pytestmark = pytest.mark.django_db


def ids(f: EventFilter) -> list[int]:
    return list(filtered_events(f).values_list("id", flat=True))


@pytest.fixture
def log(cast, org):
    """A small log: who did what to which object, where."""
    e = {}
    e["sign_in"] = audit.record(EventType.SIGN_IN, actor=cast.manager, target=cast.manager)
    e["filed"] = audit.record(
        EventType.REQUEST_FILED,
        actor=cast.manager,
        target_type="retention.deletionrequest",
        target_id=7,
        department_id=org.east.pk,
        details={"reason": "清理过期的退款会话"},
    )
    e["approved"] = audit.record(
        EventType.REQUEST_STEP_APPROVED,
        actor=cast.security,
        target_type="retention.deletionrequest",
        target_id=7,
        department_id=org.hangzhou.pk,
        details={"comment": "同意"},
    )
    e["other_request"] = audit.record(
        EventType.REQUEST_FILED,
        actor=cast.manager2,
        target_type="retention.deletionrequest",
        target_id=70,
        department_id=org.shenzhen.pk,
        details={"reason": "Quarterly CLEANUP"},
    )
    e["hold"] = audit.record(
        EventType.HOLD_PLACED,
        actor=cast.security,
        target_type="retention.conversation",
        target_id=7,
        department_id=org.warehouse.pk,
        details={"reason": "诉讼保全 100%_done"},
    )
    return e


def test_no_filter_lists_everything_newest_first(log):
    assert ids(EventFilter()) == sorted((e.pk for e in log.values()), reverse=True)


def test_actor_filter(log):
    assert ids(EventFilter(actor="security")) == [log["hold"].pk, log["approved"].pk]
    assert ids(EventFilter(actor="nobody")) == []


def test_action_filter(log):
    assert ids(EventFilter(event_types=(EventType.REQUEST_FILED,))) == [
        log["other_request"].pk,
        log["filed"].pk,
    ]


def test_department_filter_takes_the_ids_it_is_given(log, org):
    east_subtree = tuple(org.east.subtree().values_list("pk", flat=True))
    assert ids(EventFilter(department_ids=east_subtree)) == [
        log["hold"].pk,
        log["approved"].pk,
        log["filed"].pk,
    ]
    assert ids(EventFilter(department_ids=(org.east.pk,))) == [log["filed"].pk]
    assert ids(EventFilter(department_ids=())) == []


def test_object_filter_needs_type_and_id_to_match(log):
    request_7 = EventFilter(target_type="retention.deletionrequest", target_id="7")
    assert ids(request_7) == [log["approved"].pk, log["filed"].pk]
    # The conversation numbered 7 is another object.
    conversation_7 = EventFilter(target_type="retention.conversation", target_id="7")
    assert ids(conversation_7) == [log["hold"].pk]
    assert ids(EventFilter(target_type="retention.member")) == [log["sign_in"].pk]


def test_text_search_finds_substrings_of_chinese_and_ignores_case(log):
    assert ids(EventFilter(text="退款")) == [log["filed"].pk]
    assert ids(EventFilter(text="过期的退款会")) == [log["filed"].pk]
    assert ids(EventFilter(text="quarterly cleanup")) == [log["other_request"].pk]
    assert ids(EventFilter(text="不存在的词")) == []


def test_two_character_searches_match_exact_substrings(log):
    # Two characters take another index on PostgreSQL: the same answers are expected.
    assert ids(EventFilter(text="qU")) == [log["other_request"].pk]
    assert ids(EventFilter(text="保全")) == [log["hold"].pk]
    assert ids(EventFilter(text="退会")) == []  # both characters occur, never together
    assert ids(EventFilter(text="%_")) == [log["hold"].pk]
    assert ids(EventFilter(text="_d")) == [log["hold"].pk]


def test_text_search_treats_wildcards_as_text(log):
    assert ids(EventFilter(text="100%_")) == [log["hold"].pk]
    assert ids(EventFilter(text="%")) == [log["hold"].pk]
    assert ids(EventFilter(text="_")) == [log["hold"].pk]


def test_time_range_is_inclusive_from_and_exclusive_before(log):
    approved, hold = log["approved"], log["hold"]
    window = EventFilter(since=approved.created_at, until=hold.created_at)
    assert ids(window) == [log["other_request"].pk, approved.pk]
    assert ids(EventFilter(since=hold.created_at + timedelta(seconds=1))) == []
    assert ids(EventFilter(until=log["sign_in"].created_at)) == []
    assert ids(EventFilter(until=log["filed"].created_at)) == [log["sign_in"].pk]


def test_filters_combine(log, org):
    f = EventFilter(
        actor="security",
        department_ids=(org.hangzhou.pk, org.warehouse.pk),
        text="同意",
    )
    assert ids(f) == [log["approved"].pk]


def test_a_frozen_view_ignores_later_events(log):
    frozen = EventFilter(up_to_id=log["approved"].pk)
    audit.record(EventType.SIGN_IN)
    assert ids(frozen) == [log["approved"].pk, log["filed"].pk, log["sign_in"].pk]


def test_filters_survive_a_round_trip_through_json(org):
    f = EventFilter(
        since=timezone.now(),
        actor="x",
        event_types=(400, 401),
        department_ids=(org.east.pk,),
        target_type="retention.conversation",
        target_id="3",
        text="退款",
        up_to_id=9,
    )
    assert EventFilter.from_json(f.to_json()) == f
    assert EventFilter.from_json(EventFilter().to_json()) == EventFilter()
    nowhere = EventFilter(department_ids=())
    assert EventFilter.from_json(nowhere.to_json()) == nowhere


# --- keyset pages -------------------------------------------------------------------------


def test_pages_walk_back_without_gaps_or_repeats_while_events_are_appended():
    first_batch = [audit.record(EventType.CONFIG_CHANGED, target_id=i).pk for i in range(23)]
    seen: list[int] = []
    page = event_page(EventFilter(), size=5)
    while True:
        seen.extend(e.pk for e in page.events)
        # Someone keeps working while the auditor reads.
        audit.record(EventType.SIGN_IN)
        if page.older is None:
            break
        page = event_page(EventFilter(), before=page.older, size=5)
    assert seen == sorted(first_batch, reverse=True)


def test_newer_pages_lead_back_to_the_head_including_new_events():
    events = [audit.record(EventType.CONFIG_CHANGED, target_id=i).pk for i in range(12)]
    oldest_page = event_page(EventFilter(), before=events[3], size=5)
    assert [e.pk for e in oldest_page.events] == events[2::-1]
    assert oldest_page.older is None
    appended = audit.record(EventType.SIGN_IN).pk
    seen = [e.pk for e in oldest_page.events]
    page = oldest_page
    while page.newer is not None:
        page = event_page(EventFilter(), after=page.newer, size=5)
        seen = [e.pk for e in page.events] + seen
    assert seen == [appended, *reversed(events)]


def test_pages_respect_the_filter():
    wanted = []
    for i in range(9):
        event = audit.record(EventType.HOLD_PLACED if i % 3 == 0 else EventType.SIGN_IN)
        if i % 3 == 0:
            wanted.append(event.pk)
    f = EventFilter(event_types=(EventType.HOLD_PLACED,))
    first = event_page(f, size=2)
    assert [e.pk for e in first.events] == [wanted[2], wanted[1]]
    assert first.newer is None
    second = event_page(f, before=first.older, size=2)
    assert [e.pk for e in second.events] == [wanted[0]]
    assert second.older is None
    assert second.newer == wanted[0]
    assert [e.pk for e in event_page(f, after=second.newer, size=2).events] == [
        wanted[2],
        wanted[1],
    ]


def test_an_empty_log_is_one_empty_page():
    assert AuditEvent.objects.count() == 0
    page = event_page(EventFilter())
    assert (page.events, page.older, page.newer) == ([], None, None)
