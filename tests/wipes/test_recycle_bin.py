"""The recycle bin and a run's progress, on pages and over the API: who sees what, who
restores what, and bad input that changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext, ngettext

from retention.governance.filing import do_file_request
from retention.governance.scope import resolve_scope
from retention.models import Execution, Message, RequestMethod, Tombstone, TombstoneState
from retention.records.selectors import messages_of
from retention.wipes import schedule
from tests.conftest import sign_in_verified
from tests.governance.test_api_requests import api_for
from tests.wipes.test_execution import approved, binned, run, store, visible_ids

pytestmark = pytest.mark.django_db

__all__ = ["binned", "store"]  # fixtures shared with the run tests


def test_the_bin_lists_a_request_to_its_managers_and_overseers_only(client, people, store, binned):
    taken = Tombstone.objects.filter(request=binned).values_list("messages", flat=True)
    for member in (people.manager, people.director, people.admin, people.auditor):
        client.force_login(member)
        page = client.get(reverse("recycle-bin"))
        assert page.status_code == 200
        assert f'data-testid="bin-{binned.pk}"' in page.content.decode(), member
    for member in (people.manager2, people.staff):
        client.force_login(member)
        assert (
            f'data-testid="bin-{binned.pk}"'
            not in client.get(reverse("recycle-bin")).content.decode()
        )
        assert client.get(reverse("recycle-bin-request", args=[binned.pk])).status_code == 404
    listed = api_for(people.manager).get("/api/v1/recycle-bin/").json()["results"]
    assert [(e["request"], e["messages"]) for e in listed] == [(binned.pk, sum(taken))]
    assert {i["conversation"] for i in listed[0]["items"]} == {
        store["customer"].pk,
        store["group"].pk,
        store["warehouse"].pk,
    }
    assert api_for(people.manager2).get("/api/v1/recycle-bin/").json()["results"] == []


def test_a_manager_sees_only_their_subtrees_share_of_a_wider_request(client, people, org, store):
    """A company-wide deletion lists, for a region's manager, only that region's records:
    its totals and conversations, never the other region's."""
    request = approved(
        people.director,
        [people.admin],
        RequestMethod.BATCH,
        departments=[org.company.pk],
        confirm_protected=[],
    )
    run(request)
    east = Tombstone.objects.filter(
        request=request, conversation__department__path__startswith=org.east.path
    )
    listed = api_for(people.manager).get("/api/v1/recycle-bin/").json()["results"]
    assert [(e["request"], e["messages"], e["conversations"]) for e in listed] == [
        (request.pk, sum(east.values_list("messages", flat=True)), 3)
    ]
    assert store["elsewhere"].pk not in {i["conversation"] for i in listed[0]["items"]}
    client.force_login(people.manager)
    page = client.get(reverse("recycle-bin-request", args=[request.pk])).content.decode()
    assert store["elsewhere"].title not in page
    # The whole request, to those who oversee it all.
    everything = api_for(people.admin).get("/api/v1/recycle-bin/").json()["results"]
    assert everything[0]["messages"] == sum(
        Tombstone.objects.filter(request=request).values_list("messages", flat=True)
    )
    assert everything[0]["messages"] > listed[0]["messages"]


def test_the_api_lists_a_few_conversations_per_request_in_one_query(
    people, org, store, binned, monkeypatch
):
    from retention.api import recycle as recycle_api

    monkeypatch.setattr(recycle_api, "ITEMS_PER_ENTRY", 2)
    api = api_for(people.admin)

    def listed() -> tuple[list[dict], int]:
        with CaptureQueriesContext(connection) as queries:
            results = api.get("/api/v1/recycle-bin/").json()["results"]
        return results, len(queries)

    listed()  # the token's first use of the day is recorded once
    _one, queries_for_one = listed()
    south = approved(
        people.staff2, [people.manager2], RequestMethod.BATCH, departments=[org.shenzhen.pk]
    )
    run(south)
    entries, queries_for_two = listed()
    # The conversations of every request on the page come in one query.
    assert queries_for_two == queries_for_one
    by_request = {e["request"]: e for e in entries}
    assert by_request[binned.pk]["conversations"] == 3
    assert [i["conversation"] for i in by_request[binned.pk]["items"]] == sorted(
        [store["customer"].pk, store["group"].pk, store["warehouse"].pk]
    )[:2]
    assert [i["conversation"] for i in by_request[south.pk]["items"]] == [store["elsewhere"].pk]


def test_the_bin_page_of_a_request_pages_its_conversations(
    client, people, store, binned, monkeypatch
):
    from retention.web import recycle as recycle_pages

    monkeypatch.setattr(recycle_pages, "BIN_CONVERSATIONS_PER_PAGE", 2)
    client.force_login(people.manager)
    url = reverse("recycle-bin-request", args=[binned.pk])
    first = client.get(url).content.decode()
    second = client.get(url, {"page": 2}).content.decode()
    shown = [
        [c for c in ("customer", "group", "warehouse") if f'value="{store[c].pk}"' in page]
        for page in (first, second)
    ]
    assert [len(s) for s in shown] == [2, 1]
    assert set(shown[0]) | set(shown[1]) == {"customer", "group", "warehouse"}


def test_auditors_look_but_cannot_restore(client, people, store, binned):
    client.force_login(people.auditor)
    page = client.get(reverse("recycle-bin-request", args=[binned.pk])).content.decode()
    assert 'data-testid="restore"' not in page
    assert client.post(reverse("recycle-bin-restore", args=[binned.pk])).status_code == 403
    response = api_for(people.auditor).post(
        f"/api/v1/recycle-bin/{binned.pk}/restore/", {}, format="json"
    )
    assert response.status_code == 403
    assert visible_ids(store["customer"]) == set()


def test_a_manager_restores_chosen_conversations_on_the_page(client, people, store, binned):
    sign_in_verified(client, people.manager)
    response = client.post(
        reverse("recycle-bin-restore", args=[binned.pk]),
        {"conversations": [store["group"].pk]},
        follow=True,
    )
    assert response.status_code == 200
    with translation.override("zh-hans"):  # the default language of the pages
        said = ngettext(
            "Restored %(messages)s messages in %(conversations)s conversation.",
            "Restored %(messages)s messages in %(conversations)s conversations.",
            1,
        )
    assert said % {"messages": 4, "conversations": 1} in response.content.decode()
    assert len(visible_ids(store["group"])) == 4
    assert visible_ids(store["customer"], store["warehouse"]) == set()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"conversations": ["eleven"]}, "conversations"),
        ({"conversations": []}, "conversations"),
        ({"conversations": [999999]}, "conversations"),
    ],
)
def test_bad_restore_input_is_a_400_and_changes_nothing(people, store, binned, body, field):
    response = api_for(people.manager).post(
        f"/api/v1/recycle-bin/{binned.pk}/restore/", body, format="json"
    )
    assert response.status_code == 400
    assert field in response.json()
    assert set(Tombstone.objects.values_list("state", flat=True)) == {TombstoneState.BINNED}


def test_restoring_twice_is_a_409_then_the_request_leaves_the_bin(people, store, binned):
    client = api_for(people.manager)
    first = client.post(f"/api/v1/recycle-bin/{binned.pk}/restore/", {}, format="json")
    assert first.status_code == 200
    assert first.json() == {
        "messages": 14,
        "conversations": 3,
        "whole_request": True,
        "as_job": False,
    }
    assert visible_ids(store["customer"], store["group"], store["warehouse"])
    # Gone from the bin: the next attempt does not find it.
    again = client.post(f"/api/v1/recycle-bin/{binned.pk}/restore/", {}, format="json")
    assert again.status_code == 404


def test_the_request_shows_its_runs_progress_in_the_api_and_on_the_page(
    client, people, store, binned
):
    detail = api_for(people.staff).get(f"/api/v1/requests/{binned.pk}/").json()
    progress = detail["progress"]
    assert progress["status"] == "completed" and progress["percent"] == 100
    assert progress["done_messages"] == progress["total_messages"] == 14
    assert progress["eta_seconds"] == 0
    client.force_login(people.staff)
    fragment = client.get(reverse("request-progress", args=[binned.pk])).content.decode()
    assert 'data-testid="progress-percent">100 %' in fragment
    assert "hx-trigger" not in fragment  # finished: nothing left to poll
    page = client.get(reverse("request", args=[binned.pk])).content.decode()
    assert 'data-testid="progress"' in page
    client.force_login(people.manager2)
    assert client.get(reverse("request-progress", args=[binned.pk])).status_code == 404


def test_an_approved_request_polls_until_it_starts(client, people, org, store):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    client.force_login(people.staff)
    fragment = client.get(reverse("request-progress", args=[request.pk])).content.decode()
    assert 'hx-trigger="every 10s"' in fragment
    schedule.start_request(request.pk, now=request.scheduled_for)
    fragment = client.get(reverse("request-progress", args=[request.pk])).content.decode()
    assert 'hx-trigger="every 2s"' in fragment


def test_staff_see_and_restore_their_personal_deletions(client, people, store):
    conversation = store["customer"]
    request, _created = do_file_request(
        requester=people.staff,
        scope=resolve_scope(
            RequestMethod.PERSONAL, {"conversations": [conversation.pk]}, people.staff
        ),
        reason="不想看到",
    )
    client.force_login(people.staff)
    page = client.get(reverse("recycle-bin")).content.decode()
    assert conversation.title in page
    assert not messages_of(conversation, people.staff).exists()  # gone from their side
    # The bin page's Restore button.
    assert client.post(reverse("request-restore", args=[request.pk])).status_code == 302
    page = client.get(reverse("recycle-bin")).content.decode()
    with translation.override("zh-hans"):
        assert gettext("You have no personal deletions to restore.") in page
    assert (
        messages_of(conversation, people.staff).count()
        == Message.objects.filter(conversation=conversation).count()
    )


def test_the_polled_fragment_updates_the_status_badge_too(client, people, store, binned):
    client.force_login(people.staff)
    fragment = client.get(reverse("request-progress", args=[binned.pk])).content.decode()
    assert ' id="request-status"' in fragment and 'hx-swap-oob="true"' in fragment
    page = client.get(reverse("request", args=[binned.pk])).content.decode()
    assert page.count(' id="request-status"') == 1  # the page itself has one badge
    assert "hx-swap-oob" not in page


def test_a_partial_restore_returns_to_what_is_left_of_the_request(client, people, store, binned):
    sign_in_verified(client, people.manager)
    response = client.post(
        reverse("recycle-bin-restore", args=[binned.pk]), {"conversations": [store["group"].pk]}
    )
    assert response.url == reverse("recycle-bin-request", args=[binned.pk])
    response = client.post(reverse("recycle-bin-restore", args=[binned.pk]))
    assert response.url == reverse("recycle-bin")


def test_a_slow_run_shows_its_progress_without_failing(client, people, org, store):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    started = schedule.start_request(request.pk, now=request.scheduled_for)
    # One message in a minute: a rate that rounds to 0.0 per second.
    Execution.objects.filter(pk=started.pk).update(
        started_at=timezone.now() - timedelta(minutes=1), done_messages=1
    )
    client.force_login(people.staff)
    assert client.get(reverse("request-progress", args=[request.pk])).status_code == 200
    progress = api_for(people.staff).get(f"/api/v1/requests/{request.pk}/").json()["progress"]
    assert progress["rate_per_second"] == 0.0 and progress["eta_seconds"] > 0
