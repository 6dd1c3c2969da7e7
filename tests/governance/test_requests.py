"""Filing, previewing and deciding deletion requests through the actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone, translation

from audit.events import EventType
from audit.models import AuditEvent
from retention.errors import Conflict
from retention.governance.approvals import NO_MANAGER_ABOVE
from retention.governance.decisions import do_approve_step, do_cancel_request, do_reject_request
from retention.governance.decisions import do_expire_stale_requests as expire_stale_requests
from retention.governance.filing import do_restore_personal
from retention.governance.policy_changes import do_update_policies
from retention.governance.protection import do_place_hold, do_set_protected
from retention.governance.scope import compute_preview, resolve_scope
from retention.models import (
    ConversationKind,
    DeletionRequest,
    Department,
    Message,
    Notification,
    PersonalRemoval,
    QuotaGrant,
    RequestMethod,
    RequestStatus,
    StepStatus,
)
from retention.models.roles import Role
from retention.notifications import notify
from retention.policies import get_policy
from tests.conftest import file_request, make_chat, make_member

pytestmark = pytest.mark.django_db


def events_for(request, event_type):
    return AuditEvent.objects.filter(
        event_type=event_type, target_type="retention.deletionrequest", target_id=str(request.pk)
    )


def test_a_managers_batch_goes_to_the_manager_above_and_is_scheduled(regulars, org, chats):
    cast = regulars
    request = file_request(cast.manager, RequestMethod.BATCH, departments=[org.east.pk])
    assert request.status == RequestStatus.PENDING
    assert request.preview["messages"] == 3  # hangzhou (2) + warehouse (1)
    (step,) = request.steps.all()
    # The requester manages East; the next manager up (the director) must approve.
    assert step.role == "manager" and step.department == org.company
    assert events_for(request, EventType.REQUEST_FILED).count() == 1

    with pytest.raises(PermissionDenied):
        do_approve_step(
            request, acting_user=cast.manager, verified_second_factor=True
        )  # own request
    approved = do_approve_step(request, acting_user=cast.director, verified_second_factor=True)
    assert approved.status == RequestStatus.APPROVED
    assert approved.scheduled_for >= approved.decided_at + timedelta(hours=24)
    local = timezone.localtime(approved.scheduled_for).time()
    assert local.hour >= 22 or local.hour < 6  # inside the default execution window
    assert events_for(request, EventType.REQUEST_APPROVED).count() == 1


def test_staff_file_and_their_manager_approves(regulars, org, chats):
    cast = regulars
    request = file_request(cast.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    (step,) = request.steps.all()
    assert step.department == org.east
    for outsider in (cast.staff, cast.manager2, cast.auditor, cast.security, cast.staff2):
        with pytest.raises(PermissionDenied):
            do_approve_step(request, acting_user=outsider, verified_second_factor=True)
    assert (
        do_approve_step(request, acting_user=cast.manager, verified_second_factor=True).status
        == RequestStatus.APPROVED
    )


def test_staff_cannot_file_beyond_their_department(regulars, org, chats):
    # Outside what they may see, a department is "unknown", exactly like a missing one.
    for requester, department in [(regulars.staff, org.east), (regulars.manager, org.shenzhen)]:
        with translation.override("en"), pytest.raises(ValidationError, match="unknown"):
            file_request(requester, RequestMethod.BATCH, departments=[department.pk])
        with translation.override("en"), pytest.raises(ValidationError, match="unknown"):
            file_request(requester, RequestMethod.BATCH, departments=[999_999])


def test_staff_cannot_batch_delete_another_departments_group_they_belong_to(regulars, org):
    shenzhen_group = make_chat(org.shenzhen, [regulars.staff2, regulars.staff], ["周会"])
    with pytest.raises(PermissionDenied):
        file_request(regulars.staff, RequestMethod.BATCH, conversations=[shenzhen_group.pk])


def test_without_sub_departments_the_preview_says_what_is_left_out(regulars, org, chats):
    scope = resolve_scope(
        RequestMethod.BATCH,
        {"departments": [org.hangzhou.pk], "include_subdepartments": False},
        regulars.manager,
    )
    preview = compute_preview(scope, requester=regulars.manager)
    assert preview["messages"] == 2  # only the store's own chat
    (left_out,) = preview["excluded"]["subdepartments"]
    assert left_out["department"] == org.warehouse.pk
    assert left_out["messages"] == 1 and left_out["conversations"] == 1


def test_a_group_named_explicitly_is_not_left_out_with_its_sub_department(regulars, org, chats):
    # Hangzhou without its sub-departments, plus the warehouse's group by name: the group
    # is deleted, so it is not counted among what the sub-department leaves out.
    extra = make_chat(org.warehouse, [regulars.warehouse_staff], ["出库", "入库"])
    scope = resolve_scope(
        RequestMethod.BATCH,
        {
            "departments": [org.hangzhou.pk],
            "conversations": [chats["warehouse"].pk],
            "include_subdepartments": False,
        },
        regulars.manager,
    )
    preview = compute_preview(scope, requester=regulars.manager)
    assert preview["messages"] == 3  # the store's chat (2) and the named group (1)
    (left_out,) = preview["excluded"]["subdepartments"]
    assert left_out["department"] == org.warehouse.pk
    assert (left_out["messages"], left_out["conversations"]) == (2, 1)  # only ``extra``
    assert extra.pk not in {row["conversation"] for row in preview["excluded"]["held"]["items"]}


def test_high_sensitivity_adds_a_security_step_and_steps_need_distinct_people(regulars, org):
    cast = regulars
    make_chat(org.hangzhou, [cast.staff], ["电话 13812345678", "好的"])
    request = file_request(cast.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    roles = list(request.steps.values_list("role", flat=True))
    assert roles == ["manager", "security"]
    do_approve_step(request, acting_user=cast.manager, verified_second_factor=True)
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    assert (
        do_approve_step(request, acting_user=cast.security, verified_second_factor=True).status
        == RequestStatus.APPROVED
    )


def test_a_server_side_wipe_needs_three_roles_and_shows_its_cost(regulars, org, chats):
    cast = regulars
    request = file_request(cast.manager, RequestMethod.SERVER, departments=[org.east.pk])
    assert list(request.steps.values_list("role", flat=True)) == ["manager", "security", "admin"]
    assert request.cost_estimate_cny == 500
    do_approve_step(request, acting_user=cast.director, verified_second_factor=True)
    with pytest.raises(PermissionDenied):
        do_approve_step(
            request, acting_user=cast.director, verified_second_factor=True
        )  # a second step: no
    do_approve_step(request, acting_user=cast.security, verified_second_factor=True)
    assert (
        do_approve_step(request, acting_user=cast.admin, verified_second_factor=True).status
        == RequestStatus.APPROVED
    )


def test_a_decision_names_its_step_and_a_stale_one_changes_nothing(regulars, org, chats):
    cast = regulars
    both = make_member("sec_admin", org.company, Role.SECURITY, Role.ADMIN)
    request = file_request(cast.manager, RequestMethod.SERVER, departments=[org.east.pk])
    do_approve_step(request, acting_user=cast.director, step_order=1, verified_second_factor=True)
    # A second click on the director's page, meant for step 1, finds step 2 waiting.
    with translation.override("en"), pytest.raises(Conflict, match="step 2"):
        do_approve_step(
            request, acting_user=cast.director, step_order=1, verified_second_factor=True
        )
    do_approve_step(request, acting_user=cast.security, step_order=2, verified_second_factor=True)
    # Someone who may decide step 3 too, on a page still showing step 2: refused.
    events = AuditEvent.objects.count()
    with pytest.raises(Conflict):
        do_approve_step(request, acting_user=both, step_order=2, verified_second_factor=True)
    with pytest.raises(Conflict):
        do_reject_request(
            request, acting_user=both, reason="不同意", step_order=2, verified_second_factor=True
        )
    assert list(request.steps.order_by("order").values_list("status", "approver")) == [
        (StepStatus.APPROVED, cast.director.pk),
        (StepStatus.APPROVED, cast.security.pk),
        (StepStatus.PENDING, None),
    ]
    assert AuditEvent.objects.count() == events
    approved = do_approve_step(request, acting_user=both, step_order=3, verified_second_factor=True)
    assert approved.status == RequestStatus.APPROVED
    assert events_for(request, EventType.REQUEST_STEP_APPROVED).count() == 3


def test_rejection_ends_the_request_and_later_decisions_conflict(regulars, org, chats):
    cast = regulars
    request = file_request(cast.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    with pytest.raises(ValidationError):
        do_reject_request(
            request, acting_user=cast.manager, reason=" ", verified_second_factor=True
        )
    do_reject_request(
        request, acting_user=cast.manager, reason="还在处理售后", verified_second_factor=True
    )
    request.refresh_from_db()
    assert request.status == RequestStatus.REJECTED
    assert request.steps.get().status == StepStatus.REJECTED
    with pytest.raises(Conflict):
        do_approve_step(request, acting_user=cast.director, verified_second_factor=True)
    with pytest.raises(Conflict):
        do_cancel_request(request, acting_user=cast.staff)


def test_held_conversations_are_left_out_and_named(regulars, org, chats):
    cast = regulars
    do_place_hold(
        acting_user=cast.security,
        kind="legal",
        reason="诉讼保全",
        conversations=[chats["warehouse"]],
        departments=[],
        verified_second_factor=True,
    )
    request = file_request(cast.manager, RequestMethod.BATCH, departments=[org.east.pk])
    assert request.preview["messages"] == 2
    assert request.preview["excluded"]["held"] == {
        "conversations": 1,
        "messages": 1,
        "items": [{"conversation": chats["warehouse"].pk, "messages": 1}],
    }
    assert set(request.targets.values_list("conversation", flat=True)) == {chats["hangzhou"].pk}


def test_a_hold_placed_later_shows_on_the_open_requests_timeline(regulars, org, chats):
    cast = regulars
    request = file_request(cast.manager, RequestMethod.BATCH, departments=[org.east.pk])
    with pytest.raises(PermissionDenied):
        do_place_hold(
            acting_user=cast.manager,
            kind="legal",
            reason="x",
            conversations=[],
            departments=[org.east],
            verified_second_factor=True,
        )
    do_place_hold(
        acting_user=cast.security,
        kind="sensitive",
        reason="交易纠纷",
        conversations=[],
        departments=[org.warehouse],
        verified_second_factor=True,
    )
    assert events_for(request, EventType.HOLD_PLACED).count() == 1


def test_protected_conversations_need_explicit_confirmation(regulars, org, chats):
    cast = regulars
    supplier = make_chat(org.hangzhou, [cast.staff], ["报价单已发"], title="供应商对接群")
    supplier.kind = ConversationKind.GROUP
    supplier.save()
    do_set_protected(supplier, acting_user=cast.admin, protected=True, verified_second_factor=True)
    with pytest.raises(ValidationError) as error:
        file_request(cast.manager, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    assert "供应商对接群" in str(error.value)
    request = file_request(
        cast.manager,
        RequestMethod.BATCH,
        departments=[org.hangzhou.pk],
        confirm_protected=[supplier.pk],
    )
    assert request.preview["protected_confirmed"] == [supplier.pk]
    assert supplier.pk in set(request.targets.values_list("conversation", flat=True))


def test_personal_deletion_is_immediate_limited_by_quota_and_restorable(regulars, chats):
    cast = regulars
    conversation = chats["hangzhou"]
    do_update_policies(
        actor=cast.admin, changes={"personal_monthly_quota": 1}, verified_second_factor=True
    )
    request = file_request(cast.staff, RequestMethod.PERSONAL, conversations=[conversation.pk])
    assert request.status == RequestStatus.COMPLETED
    removal = PersonalRemoval.objects.get(request=request)
    assert removal.member == cast.staff and removal.message is None
    assert Message.objects.filter(conversation=conversation).count() == 2  # others keep theirs

    with pytest.raises(PermissionDenied, match="1"):
        file_request(cast.staff, RequestMethod.PERSONAL, conversations=[conversation.pk])
    refused = AuditEvent.objects.get(event_type=EventType.REQUEST_REFUSED)
    assert refused.details["why"] == "quota"

    QuotaGrant.objects.create(
        member=cast.staff,
        month=timezone.localdate().replace(day=1),
        extra=1,
        reason="年底清理",
        granted_by=cast.admin,
    )
    file_request(cast.staff, RequestMethod.PERSONAL, conversations=[conversation.pk])

    do_restore_personal(request, acting_user=cast.staff)
    removal.refresh_from_db()
    assert removal.restored_at is not None
    with pytest.raises(Conflict):
        do_restore_personal(request, acting_user=cast.staff)


def test_a_personal_deletion_takes_no_date_range(regulars, chats):
    with translation.override("en"), pytest.raises(ValidationError, match="date range"):
        file_request(
            regulars.staff,
            RequestMethod.PERSONAL,
            conversations=[chats["hangzhou"].pk],
            sent_after=timezone.localdate(),
        )


def test_the_frozen_scope_sums_to_the_preview(regulars, org, chats):
    make_chat(org.warehouse, [regulars.warehouse_staff], ["a", "b", "c"])
    request = file_request(regulars.manager, RequestMethod.BATCH, departments=[org.east.pk])
    assert sum(request.targets.values_list("messages", flat=True)) == request.preview["messages"]
    assert request.targets.count() == request.preview["conversations"]


def test_only_the_sole_root_manager_wipes_the_whole_company(regulars, org, chats):

    other_root = Department.objects.create(name="Other company")
    boss2 = make_member("boss2", other_root, "manager")
    with pytest.raises(PermissionDenied):
        file_request(boss2, RequestMethod.SERVER, whole_company=True)
    with pytest.raises(PermissionDenied):
        file_request(regulars.director, RequestMethod.SERVER, whole_company=True)  # two roots now


def test_a_chain_nobody_can_complete_is_refused_at_filing(regulars, org, chats):
    # The company's manager wipes the company: nobody manages above the scope, so the
    # manager step goes to an admin and the chain is admin, security, admin. One admin
    # cannot decide two steps: with only one, nobody can complete it.
    with translation.override("en"), pytest.raises(ValidationError, match="Nobody else could"):
        file_request(regulars.director, RequestMethod.SERVER, whole_company=True)
    assert not DeletionRequest.objects.exists()


def test_with_no_manager_above_a_wipe_still_needs_three_distinct_approvers(regulars, org, chats):

    admin2 = make_member("admin2", org.company, Role.ADMIN)
    request = file_request(regulars.director, RequestMethod.SERVER, whole_company=True)
    steps = list(request.steps.order_by("order"))
    assert [s.role for s in steps] == ["admin", "security", "admin"]
    assert steps[0].because == NO_MANAGER_ABOVE
    do_approve_step(request, acting_user=regulars.admin, verified_second_factor=True)
    do_approve_step(request, acting_user=regulars.security, verified_second_factor=True)
    with pytest.raises(PermissionDenied):
        do_approve_step(
            request, acting_user=regulars.admin, verified_second_factor=True
        )  # already decided step 1
    assert (
        do_approve_step(request, acting_user=admin2, verified_second_factor=True).status
        == RequestStatus.APPROVED
    )


def test_a_manager_who_is_also_an_auditor_is_not_a_level_for_the_manager_step(regulars, org, chats):
    # Auditors never approve, so a manager-auditor does not make their department the
    # manager step's level: the step goes higher (here: to an admin, as nobody else
    # manages above the director) instead of the filing being refused as unapprovable.

    make_member("audit_director", org.company, Role.MANAGER, Role.AUDITOR)
    request = file_request(regulars.director, RequestMethod.BATCH, departments=[org.company.pk])
    (step,) = request.steps.all()
    assert (step.role, step.department, step.because) == ("admin", None, NO_MANAGER_ABOVE)
    assert do_approve_step(
        request, acting_user=regulars.admin, verified_second_factor=True
    ).status == (RequestStatus.APPROVED)

    make_member("audit_store_manager", org.hangzhou, Role.MANAGER, Role.AUDITOR)
    request = file_request(regulars.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    (step,) = request.steps.all()
    assert step.role == "manager" and step.department == org.east


def test_personal_deletion_only_of_ones_own_conversations(regulars, chats):
    with pytest.raises(ValidationError):
        file_request(regulars.staff, RequestMethod.PERSONAL, conversations=[chats["shenzhen"].pk])


def test_batch_filing_needs_a_sign_in_streak(cast, org, chats):
    with translation.override("en"), pytest.raises(PermissionDenied, match="consecutive"):
        file_request(cast.manager, RequestMethod.BATCH, departments=[org.east.pk])
    assert AuditEvent.objects.get(event_type=EventType.REQUEST_REFUSED).details["why"] == (
        "eligibility"
    )


def test_records_arriving_after_filing_are_not_in_scope(regulars, org, chats):
    cast = regulars
    request = file_request(cast.manager, RequestMethod.BATCH, departments=[org.east.pk])
    late = make_chat(org.hangzhou, [cast.staff], ["新消息"])
    assert Message.objects.filter(conversation=late).get().pk > request.max_message_id
    assert late.pk not in set(request.targets.values_list("conversation", flat=True))


def test_undecided_requests_expire_and_the_job_is_idempotent(regulars, org, chats):

    request = file_request(regulars.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    assert expire_stale_requests() == 0  # still fresh
    DeletionRequest.objects.filter(pk=request.pk).update(
        filed_at=timezone.now() - timedelta(days=15)
    )
    assert expire_stale_requests() == 1
    assert expire_stale_requests() == 0
    request.refresh_from_db()
    assert request.status == RequestStatus.EXPIRED
    assert request.steps.get().status == StepStatus.CANCELLED
    assert events_for(request, EventType.REQUEST_EXPIRED).count() == 1
    with pytest.raises(Conflict):
        do_approve_step(request, acting_user=regulars.manager, verified_second_factor=True)


def test_approvers_requester_and_members_are_notified_in_app_and_by_mail(
    regulars, org, chats, mailoutbox, django_capture_on_commit_callbacks, settings
):

    cast = regulars
    for member in vars(cast).values():
        member.email = f"{member.username}@example.com"
        member.save()
    # Jobs run at once here: the queue itself is tested in tests/jobs/test_queue.py.
    settings.RQ_QUEUES = {
        name: {**config, "ASYNC": False} for name, config in settings.RQ_QUEUES.items()
    }
    with django_capture_on_commit_callbacks(execute=True):
        request = file_request(cast.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    awaiting = Notification.objects.filter(verb=notify.STEP_AWAITS, request=request)
    # Everyone who may decide the step: East's manager and the director above them.
    assert set(awaiting.values_list("recipient__username", flat=True)) == {"manager", "director"}
    mailed = {to for m in mailoutbox for to in m.to}
    assert mailed == {"manager@example.com", "director@example.com"}

    with django_capture_on_commit_callbacks(execute=True):
        do_approve_step(request, acting_user=cast.manager, verified_second_factor=True)
    assert Notification.objects.filter(verb=notify.APPROVED, recipient=cast.staff).exists()
    scheduled = Notification.objects.filter(verb=notify.SCHEDULED)
    # Everyone in the affected conversations (hangzhou's staff, the warehouse's staff).
    assert set(scheduled.values_list("recipient__username", flat=True)) == {"staff", "warehouse"}
    assert "staff@example.com" in {to for m in mailoutbox for to in m.to}


def test_any_time_execution_window_runs_right_after_the_delay(regulars, org, chats):
    cast = regulars
    do_update_policies(
        actor=cast.admin,
        changes={"execution_window": None, "batch_delay_hours": 1},
        verified_second_factor=True,
    )

    assert get_policy("execution_window") is None
    request = file_request(cast.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    approved = do_approve_step(request, acting_user=cast.manager, verified_second_factor=True)
    assert approved.scheduled_for == approved.decided_at + timedelta(hours=1)
