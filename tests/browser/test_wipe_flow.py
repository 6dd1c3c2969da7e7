"""A batch deletion carried out: the manager approves in the browser, a real RQ worker
runs the wipe while the progress bar fills without a reload, the records sit in the
recycle bin, and a restore brings them back."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from retention.governance.filing import do_file_request
from retention.governance.policy_changes import do_update_policies
from retention.governance.scope import resolve_scope
from retention.models import DeletionRequest, Message, RequestMethod, RequestStatus
from retention.records.store import NewMessage, add_messages
from tests.browser.conftest import screenshot
from tests.browser.test_requests_flow import sign_in
from tests.conftest import make_chat, running_worker, sign_in_streak

pytestmark = [pytest.mark.browser, pytest.mark.queue, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(redis_queue_connection):
    """A real `manage.py rqworker` with its scheduler, on the test database, working in
    small, slightly paced batches so that the progress bar has something to show."""
    # Moves take 4 × 10 = 40 messages a batch: 11 batches, ~4.5 s with the pauses,
    # so the page (polling every 2 s) shows the bar part-way.
    with running_worker(
        "wipes",
        "default",
        "--with-scheduler",
        QINGLI_WIPE_BATCH_MESSAGES="10",
        QINGLI_WIPE_BATCH_PAUSE_MS="400",
    ) as process:
        yield process


@pytest.fixture
def store_chats(cast, org):
    do_update_policies(
        actor=cast.admin,
        changes={"batch_delay_hours": 0, "execution_window": None},
        verified_second_factor=True,
    )
    sign_in_streak([cast.staff])
    chats = [make_chat(org.hangzhou, [cast.staff], ["开始"], title=f"客户{i}") for i in range(4)]
    start = timezone.now() - timedelta(days=30)
    for n, chat in enumerate(chats):
        add_messages(
            chat,
            [
                NewMessage(
                    sender=cast.staff,
                    sender_name="staff",
                    sent_at=start + timedelta(minutes=i),
                    body=f"订单{n}-{i} 已发货",
                )
                for i in range(100)
            ],
        )
    elsewhere = make_chat(org.shenzhen, [cast.staff2], ["深圳店早会"])
    return chats, elsewhere


def test_a_manager_approves_the_wipe_runs_live_and_a_restore_brings_it_back(
    page, cast, org, store_chats, worker
):
    chats, elsewhere = store_chats
    request, _ = do_file_request(
        requester=cast.staff,
        scope=resolve_scope(RequestMethod.BATCH, {"departments": [org.hangzhou.pk]}, cast.staff),
        reason="门店清理一个月前的客户聊天",
    )
    in_scope = set(Message.objects.filter(conversation__in=chats).values_list("pk", flat=True))
    assert request.preview["messages"] == len(in_scope) == 404

    sign_in(page, "manager", second_factor=True)
    page.goto(f"/requests/{request.pk}/")
    page.evaluate("document.body.dataset.sameDocument = 'yes'")
    page.get_by_test_id("approve").click()
    page.wait_for_load_state()
    page.evaluate("document.body.dataset.sameDocument = 'yes'")

    progress = page.get_by_test_id("progress-percent")
    shown: list[int] = []  # every value the bar showed, read as the page updates itself
    deadline = time.monotonic() + 60
    while not shown or shown[-1] < 100:
        assert time.monotonic() < deadline, shown
        if progress.count():
            value = int(progress.inner_text().rstrip(" %"))
            if not shown or value != shown[-1]:
                shown.append(value)
                if 0 < value < 100:
                    screenshot(page, "wipe-progress")
        page.wait_for_timeout(100)
    assert any(0 < value < 100 for value in shown), shown  # it filled, not jumped
    assert shown == sorted(shown)
    assert page.evaluate("document.body.dataset.sameDocument") == "yes"  # no reload
    expect(page.get_by_test_id("progress-counts")).to_contain_text("404")
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED
    assert not Message.objects.filter(conversation__in=chats).exists()
    assert Message.objects.filter(conversation=elsewhere).count() == 1

    page.get_by_test_id("nav-recycle-bin").click()
    row = page.get_by_test_id(f"bin-{request.pk}")
    expect(row).to_contain_text("404")
    screenshot(page, "recycle-bin")
    row.get_by_role("link", name=f"#{request.pk}").click()
    expect(page.get_by_test_id("bin-conversations").locator("tbody tr")).to_have_count(4)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("restore").click()
    page.wait_for_url("**/recycle-bin/")
    expect(page.get_by_test_id(f"bin-{request.pk}")).to_have_count(0)

    restored = set(Message.objects.filter(conversation__in=chats).values_list("pk", flat=True))
    assert restored == in_scope
    assert DeletionRequest.objects.get(pk=request.pk).status == RequestStatus.COMPLETED
