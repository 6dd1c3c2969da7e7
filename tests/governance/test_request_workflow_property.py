"""The deletion-request workflow under random sequences of actions (hypothesis stateful).

A state machine files batch and server-side requests (and personal deletions) as random
members, lets random members approve, reject and cancel them, lets admins change the
approval chains and security officers place and release holds in between. Every action
is judged by an oracle written from PRODUCT.md — who may decide which step, who may
cancel — and after every step the whole database is checked against invariants:

- an approved request has all its steps approved, by pairwise distinct, active approvers,
  none of them the requester or an auditor, each eligible for its step's role (manager
  steps: a manager of the step's department or above it, which is itself the scope's
  department or above it; security steps: a security officer; admin steps: an admin);
- it has at least as many steps as its method's chain had when it was filed; at filing,
  exactly one step per role of that chain (a manager step that no other manager above
  the scope can take goes to an admin), and each step can get a different eligible person;
- a rejected request has exactly one rejected step, a pending one exactly one pending step;
- personal requests never have steps;
- each decided step has exactly one audit event, and the audit chain verifies;
- a decision names the step it was shown, so the same decision sent twice conflicts.

Each example runs inside a savepoint that is rolled back afterwards, so every example
starts from the same small company (built in the machine's constructor). The machine is
run through ``run_state_machine_as_test`` inside a pytest-django test, rather than as
``Machine.TestCase``: pytest-django refuses database access to plain unittest cases.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, event, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from audit.chain import verify_chain
from audit.events import EventType
from audit.models import AuditEvent
from retention.access.predicates import eligible_approvers, steps_awaiting
from retention.errors import Conflict
from retention.governance.approvals import HIGH_SENSITIVITY, NO_MANAGER_ABOVE
from retention.governance.decisions import do_approve_step, do_cancel_request, do_reject_request
from retention.governance.filing import do_file_request
from retention.governance.policy_changes import do_update_policies
from retention.governance.protection import do_place_hold, do_release_hold
from retention.governance.scope import resolve_scope
from retention.models import (
    Conversation,
    ConversationKind,
    DeletionRequest,
    Department,
    Hold,
    RequestMethod,
    RequestStatus,
    StepStatus,
)
from retention.models.roles import Role
from retention.policies import DEFAULTS, get_policy
from tests.conftest import make_chat, make_member, sign_in_streak

pytestmark = pytest.mark.django_db

DEPARTMENTS = ["company", "east", "hangzhou", "warehouse", "south", "shenzhen"]
PARENTS = {
    "company": None,
    "east": "company",
    "hangzhou": "east",
    "warehouse": "hangzhou",
    "south": "company",
    "shenzhen": "south",
}


@dataclass(frozen=True)
class Person:
    name: str
    department: str
    roles: frozenset[str]
    active: bool = True
    streak: bool = True  # signed in on the last five days: may file batches


PEOPLE = [
    Person("admin", "company", frozenset({Role.ADMIN})),
    Person("security", "company", frozenset({Role.SECURITY})),
    # Two people hold two approver roles: eligible for two steps of one chain, they may
    # still decide only one of them.
    Person("sec_admin", "company", frozenset({Role.SECURITY, Role.ADMIN})),
    Person("sec_admin2", "company", frozenset({Role.SECURITY, Role.ADMIN})),
    Person("auditor", "company", frozenset({Role.AUDITOR})),
    Person("director", "company", frozenset({Role.MANAGER})),
    Person("manager", "east", frozenset({Role.MANAGER})),
    Person("manager_b", "east", frozenset({Role.MANAGER})),
    # A manager who is also an auditor may file nothing and approve nothing.
    Person("audit_manager", "east", frozenset({Role.MANAGER, Role.AUDITOR})),
    Person("store_manager", "hangzhou", frozenset({Role.MANAGER})),
    Person("manager2", "south", frozenset({Role.MANAGER})),
    Person("retired", "south", frozenset({Role.MANAGER}), active=False),
    Person("staff", "hangzhou", frozenset({Role.STAFF})),
    Person("staff2", "shenzhen", frozenset({Role.STAFF})),
    Person("warehouse_staff", "warehouse", frozenset({Role.STAFF})),
    Person("newbie", "hangzhou", frozenset({Role.STAFF}), streak=False),
]
NAMES = [p.name for p in PEOPLE]
BY_NAME = {p.name: p for p in PEOPLE}
# (key, department, kind, participants, bodies)
CHATS = [
    ("hz_customer", "hangzhou", ConversationKind.CUSTOMER, ["staff"], ["亲，在的", "已发货"]),
    ("hz_group", "hangzhou", ConversationKind.GROUP, ["staff", "store_manager"], ["早会"]),
    # A mainland mobile number: high sensitivity, so batches over it need security too.
    ("hz_phone", "hangzhou", ConversationKind.GROUP, ["staff"], ["收货电话 13812345678"]),
    ("warehouse", "warehouse", ConversationKind.GROUP, ["warehouse_staff", "staff"], ["盘点"]),
    ("east", "east", ConversationKind.GROUP, ["manager", "manager_b", "audit_manager"], ["周报"]),
    ("shenzhen", "shenzhen", ConversationKind.GROUP, ["staff2", "manager2", "staff"], ["早会"]),
    ("south", "south", ConversationKind.GROUP, ["manager2"], ["区域会议"]),
    ("company", "company", ConversationKind.GROUP, ["director", "admin", "security"], ["通知"]),
]
CHAT_KEYS = [c[0] for c in CHATS]
GROUP_CHAT_KEYS = [c[0] for c in CHATS if c[2] == ConversationKind.GROUP]
PROTECTED_CHAT = "hz_group"
APPROVER_ROLES = [Role.MANAGER.value, Role.SECURITY.value, Role.ADMIN.value]

# What happened across every example of a run (the plain test below reads it).
REACHED: Counter[str] = Counter()
ALLOWED = (PermissionDenied, Conflict, ValidationError)


def outcome_of(call) -> type[Exception] | None:
    """Run an action; None if it succeeded, else the class of its allowed refusal."""
    try:
        call()
    except ALLOWED as exc:
        for kind in ALLOWED:
            if isinstance(exc, kind):
                return kind
    return None


class RequestWorkflow(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        try:
            self._build_company()
        except BaseException:
            self.teardown()
            raise
        # request pk -> what the model knows about it from its filing
        self.filed: dict[int, dict] = {}
        # active hold pk -> (conversation key or None, department key or None)
        self.holds: dict[int, tuple[str | None, str | None]] = {}

    def _build_company(self) -> None:
        self.departments: dict[str, Department] = {}
        for key in DEPARTMENTS:
            parent = self.departments.get(PARENTS[key]) if PARENTS[key] else None
            self.departments[key] = Department.objects.create(name=key, parent=parent)
        self.members = {}
        on_a_streak = []
        for person in PEOPLE:
            member = make_member(
                person.name, self.departments[person.department], *map(Role, person.roles)
            )
            if not person.active:
                member.is_active = False
                member.save(update_fields=["is_active"])
            self.members[person.name] = member
            if person.streak:
                on_a_streak.append(member)
        sign_in_streak(on_a_streak)
        self.by_pk = {m.pk: BY_NAME[name] for name, m in self.members.items()}
        self.chats: dict[str, Conversation] = {}
        for key, department, kind, participants, bodies in CHATS:
            self.chats[key] = make_chat(
                self.departments[department],
                [self.members[n] for n in participants],
                bodies,
                kind=kind,
                title=key,
            )
        Conversation.objects.filter(pk=self.chats[PROTECTED_CHAT].pk).update(is_protected=True)
        self.paths = {key: d.path for key, d in self.departments.items()}
        self.dept_key = {d.pk: key for key, d in self.departments.items()}

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- the oracle ---------------------------------------------------------------------

    def manages(self, person: Person, department_pk: int | None) -> bool:
        """``person`` is a manager of this department or of one above it."""
        if department_pk is None or Role.MANAGER not in person.roles:
            return False
        return self.paths[self.dept_key[department_pk]].startswith(self.paths[person.department])

    def may_hold_step(self, person: Person, step) -> bool:
        """Eligibility for a step's role alone (not separation of duties)."""
        if not person.active or Role.AUDITOR in person.roles:
            return False
        if step.role == Role.MANAGER:
            return self.manages(person, step.department_id)
        return step.role in person.roles

    def expected_decision(self, request: DeletionRequest, person: Person):
        if request.status != RequestStatus.PENDING:
            return Conflict
        steps = list(request.steps.all())
        pending = [s for s in steps if s.status == StepStatus.PENDING]
        if not pending:
            return Conflict
        step = min(pending, key=lambda s: s.order)
        member = self.members[person.name]
        if member.pk == request.requester_id:
            return PermissionDenied
        if any(s.approver_id == member.pk for s in steps if s.pk != step.pk):
            return PermissionDenied
        return None if self.may_hold_step(person, step) else PermissionDenied

    def pick_request(self, pick: int) -> DeletionRequest:
        """Mostly an open batch or server request (those have decisions left to make)."""
        pks = sorted(self.filed)
        if pick % 4:
            open_pks = sorted(
                DeletionRequest.objects.filter(
                    pk__in=pks, status__in=[RequestStatus.PENDING, RequestStatus.APPROVED]
                ).values_list("pk", flat=True)
            )
            pks = open_pks or pks
        return DeletionRequest.objects.get(pk=pks[pick % len(pks)])

    def is_held(self, chat: str) -> bool:
        department = next(c[1] for c in CHATS if c[0] == chat)
        return any(
            held_chat == chat
            or (held_department and self.paths[department].startswith(self.paths[held_department]))
            for held_chat, held_department in self.holds.values()
        )

    def expected_targets(self, method: str, data: dict) -> dict[int, int]:
        """Conversation pk -> messages that a filed request must freeze: everything the
        scope names, minus what is on hold and protected chats not confirmed."""
        if data.get("sent_before") and data["sent_before"] <= timezone.localdate():
            return {}  # every message was sent yesterday or today
        targets = {}
        for key in self.named_chats(method, data):
            chat = self.chats[key]
            if self.is_held(key):
                continue
            if key == PROTECTED_CHAT and chat.pk not in data["confirm_protected"]:
                continue
            targets[chat.pk] = len(next(c[4] for c in CHATS if c[0] == key))
        return targets

    def named_chats(self, method: str, data: dict) -> list[str]:
        """The chats a scope names, holds and protection aside."""
        include_sub = data["include_subdepartments"] or method == RequestMethod.SERVER
        named = []
        for key, department, *_rest in CHATS:
            path = self.paths[department]
            if (
                data.get("whole_company")
                or self.chats[key].pk in data.get("conversations", [])
                or any(
                    path.startswith(self.paths[self.dept_key[d]])
                    if include_sub
                    else self.departments[department].pk == d
                    for d in data["departments"]
                )
            ):
                named.append(key)
        return named

    # --- filing -------------------------------------------------------------------------

    @rule(
        who=st.sampled_from(NAMES),
        method=st.sampled_from([RequestMethod.BATCH, RequestMethod.SERVER]),
        departments=st.lists(st.sampled_from(DEPARTMENTS), max_size=2, unique=True),
        groups=st.lists(st.sampled_from(GROUP_CHAT_KEYS), max_size=1),
        include_subdepartments=st.booleans(),
        whole_company=st.booleans(),
        confirm_protected=st.booleans(),
        dates=st.sampled_from(["any", "recent", "long ago"]),
    )
    def file_anything(self, who, method, departments, groups, whole_company, **kw):
        """Any member, any scope: mostly refusals, which must change nothing."""
        data = {
            "departments": [self.departments[d].pk for d in departments],
            "conversations": [self.chats[c].pk for c in groups],
            "whole_company": whole_company and method == RequestMethod.SERVER,
        }
        self.file(who, method, data, **kw)

    @rule(
        who=st.sampled_from(NAMES),
        method=st.sampled_from([RequestMethod.BATCH, RequestMethod.SERVER]),
        below=st.integers(0, 2),
        include_subdepartments=st.booleans(),
        confirm_protected=st.booleans() | st.just(True),
        dates=st.sampled_from(["any", "any", "recent"]),
    )
    def file_in_own_department(self, who, method, below, **kw):
        """A member's own department or one below it: what people usually file."""
        key = BY_NAME[who].department
        for _ in range(below):
            children = [k for k, parent in PARENTS.items() if parent == key]
            key = children[0] if children else key
        self.file(who, method, {"departments": [self.departments[key].pk]}, **kw)

    @rule(
        who=st.sampled_from(["staff", "store_manager", "manager", "director", "newbie"]),
        include_subdepartments=st.booleans(),
    )
    def file_batch_over_sensitive_records(self, who, include_subdepartments):
        """The Hangzhou store holds a customer's phone number: its batches need security."""
        self.file(
            who,
            RequestMethod.BATCH,
            {"departments": [self.departments["hangzhou"].pk]},
            include_subdepartments=include_subdepartments,
            confirm_protected=True,
            dates="any",
        )

    def file(self, who, method, data, *, include_subdepartments, confirm_protected, dates):
        today = timezone.localdate()
        data = {
            **data,
            "include_subdepartments": include_subdepartments,
            "confirm_protected": [self.chats[PROTECTED_CHAT].pk] if confirm_protected else [],
        }
        if dates == "recent":
            data |= {"sent_after": today - timedelta(days=3), "sent_before": today + timedelta(1)}
        elif dates == "long ago":
            data |= {"sent_after": today - timedelta(days=90), "sent_before": today - timedelta(30)}
        requester = self.members[who]
        chain = list(get_policy("approval_chains")[method])
        before = DeletionRequest.objects.count()
        filed = []

        def call():
            scope = resolve_scope(method, data, requester)
            filed.append(do_file_request(requester=requester, scope=scope, reason="清理")[0])

        refused = outcome_of(call)
        event(f"file {method}: {refused.__name__ if refused else 'filed'}")
        person = BY_NAME[who]
        if Role.AUDITOR in person.roles or (method == RequestMethod.BATCH and not person.streak):
            assert refused is not None, (who, method, data)
        if refused is not None:
            assert DeletionRequest.objects.count() == before
            return
        (request,) = filed
        assert request.status == RequestStatus.PENDING
        self.filed[request.pk] = {"chain": chain, "method": method}
        self.check_plan(request, chain)
        # The frozen scope is exactly the requested scope minus holds and unconfirmed
        # protected chats, and the preview counted exactly what was frozen.
        frozen = dict(request.targets.values_list("conversation", "messages"))
        assert frozen == self.expected_targets(method, data), (who, method, data)
        assert sum(frozen.values()) == request.preview["messages"]
        held_named = [k for k in self.named_chats(method, data) if self.is_held(k)]
        assert request.preview["excluded"]["held"]["conversations"] == len(held_named)

    def check_plan(self, request: DeletionRequest, chain: list[str]) -> None:
        """The steps follow the chain in force at filing, plus security for sensitive
        batches; a manager step with no other manager above the scope becomes an admin's."""
        expected = [(role, "") for role in chain]
        if (
            request.method == RequestMethod.BATCH
            and request.preview["high_sensitivity"]
            and Role.SECURITY not in chain
        ):
            expected.append((Role.SECURITY.value, HIGH_SENSITIVITY))
        # Auditors never approve, so they are no manager "above the scope" either.
        nobody_above = not any(
            p.active
            and p.name != request.requester.username
            and Role.AUDITOR not in p.roles
            and self.manages(p, request.scope_root_id)
            for p in PEOPLE
        )
        # Every role of the chain is a step: a manager step with nobody above goes to an
        # admin, even when the chain has an admin step already. Chains never shorten.
        planned = [
            (Role.ADMIN.value, NO_MANAGER_ABOVE)
            if role == Role.MANAGER and nobody_above
            else (role, because)
            for role, because in expected
        ]
        steps = list(request.steps.order_by("order"))
        assert [s.order for s in steps] == list(range(1, len(planned) + 1))
        assert [(s.role, s.because) for s in steps] == planned, (request.pk, chain)
        assert [s.status for s in steps] == [StepStatus.PENDING] + [StepStatus.WAITING] * (
            len(steps) - 1
        )
        # Filing is refused unless each step can get its own eligible person.
        assert self.staffable(request, steps), (request.pk, [s.role for s in steps])

    def staffable(self, request: DeletionRequest, steps: list) -> bool:
        """Some assignment gives every step a different eligible person (not the
        requester): the oracle's own search, independent of the filing code's."""
        candidates = [
            [
                p.name
                for p in PEOPLE
                if p.name != request.requester.username and self.may_hold_step(p, step)
            ]
            for step in steps
        ]

        def assign(index: int, taken: frozenset[str]) -> bool:
            if index == len(candidates):
                return True
            return any(
                assign(index + 1, taken | {name}) for name in candidates[index] if name not in taken
            )

        return assign(0, frozenset())

    @rule(who=st.sampled_from(NAMES), chat=st.sampled_from(CHAT_KEYS), own=st.booleans())
    def file_personal(self, who, chat, own):
        if own:  # mostly one of the member's own conversations
            mine = [c[0] for c in CHATS if who in c[3]]
            chat = mine[CHAT_KEYS.index(chat) % len(mine)] if mine else chat
        requester = self.members[who]
        data = {"conversations": [self.chats[chat].pk]}
        filed = []

        def call():
            scope = resolve_scope(RequestMethod.PERSONAL, data, requester)
            filed.append(do_file_request(requester=requester, scope=scope, reason="不想看")[0])

        refused = outcome_of(call)
        event(f"file personal: {refused.__name__ if refused else 'done'}")
        takes_part = who in next(c[3] for c in CHATS if c[0] == chat)
        if not takes_part:
            assert refused is ValidationError
        if refused is None:
            (request,) = filed
            assert request.status == RequestStatus.COMPLETED
            self.filed[request.pk] = {"chain": [], "method": RequestMethod.PERSONAL}

    # --- deciding -----------------------------------------------------------------------

    def decide(self, request: DeletionRequest, who: str, action: str) -> type | None:
        """Decide as a page does, naming the step it shows; a successful decision sent
        again (a double submit) must then be a Conflict that changes nothing."""
        person = BY_NAME[who]
        expected = self.expected_decision(request, person)
        member = self.members[who]
        shown = request.steps.filter(status=StepStatus.PENDING).order_by("order").first()
        order = shown.order if shown else None

        def call():
            if action == "approve":
                do_approve_step(
                    request, acting_user=member, step_order=order, verified_second_factor=True
                )
            else:
                do_reject_request(
                    request,
                    acting_user=member,
                    reason="不同意",
                    step_order=order,
                    verified_second_factor=True,
                )

        refused = outcome_of(call)
        assert refused is expected, (action, who, request.pk, expected, refused)
        event(f"{action}: {refused.__name__ if refused else 'done'}")
        if refused is None:
            before = list(request.steps.order_by("order").values_list("status", "approver"))
            assert outcome_of(call) is Conflict, (action, who, request.pk, "sent twice")
            after = list(request.steps.order_by("order").values_list("status", "approver"))
            assert after == before
        return refused

    @precondition(lambda self: self.filed)
    @rule(pick=st.integers(0, 10_000), who=st.sampled_from(NAMES))
    def approve(self, pick, who):
        self.decide(self.pick_request(pick), who, "approve")

    def decide_as_someone_eligible(self, request: DeletionRequest, choice: int, action: str):
        """Someone the oracle says may decide, decides (False: nobody may)."""
        eligible = [p.name for p in PEOPLE if self.expected_decision(request, p) is None]
        if eligible:
            assert self.decide(request, eligible[choice % len(eligible)], action) is None
        return bool(eligible)

    @precondition(lambda self: self.filed)
    @rule(pick=st.integers(0, 10_000), choice=st.integers(0, 10_000))
    def approve_as_someone_eligible(self, pick, choice):
        """Let the approvals go somewhere."""
        self.decide_as_someone_eligible(self.pick_request(pick), choice, "approve")

    @precondition(lambda self: self.filed)
    @rule(pick=st.integers(0, 10_000), choice=st.integers(0, 10_000))
    def approve_every_step_in_turn(self, pick, choice):
        """See one request through: eligible people approve step after step until it is
        approved or nobody left may decide (a chain's steps each need another person)."""
        request = self.pick_request(pick)
        while self.decide_as_someone_eligible(request, choice, "approve"):
            request.refresh_from_db()

    @precondition(lambda self: self.filed)
    @rule(pick=st.integers(0, 10_000), choice=st.integers(0, 10_000))
    def approve_as_the_requester_or_an_earlier_approver(self, pick, choice):
        """The people separation of duties keeps out: they must always be refused."""
        request = self.pick_request(pick)
        steps = request.steps.select_related("approver")
        suspects = [request.requester.username] + [s.approver.username for s in steps if s.approver]
        refused = self.decide(request, suspects[choice % len(suspects)], "approve")
        assert refused is not None

    @precondition(lambda self: self.filed)
    @rule(pick=st.integers(0, 10_000), who=st.sampled_from(NAMES))
    def reject(self, pick, who):
        self.decide(self.pick_request(pick), who, "reject")

    @precondition(lambda self: self.filed)
    @rule(pick=st.integers(0, 10_000), choice=st.integers(0, 10_000))
    def reject_as_someone_eligible(self, pick, choice):
        """Rejections too, not only when a random member happens to be eligible."""
        self.decide_as_someone_eligible(self.pick_request(pick), choice, "reject")

    @precondition(lambda self: self.filed)
    @rule(pick=st.integers(0, 10_000), who=st.sampled_from(NAMES))
    def reject_without_a_reason(self, pick, who):
        request = self.pick_request(pick)
        before = list(request.steps.values_list("status", flat=True))
        refused = outcome_of(
            lambda: do_reject_request(
                request, acting_user=self.members[who], reason="  ", verified_second_factor=True
            )
        )
        assert refused is ValidationError
        assert list(request.steps.values_list("status", flat=True)) == before

    @precondition(lambda self: self.filed)
    @rule(pick=st.integers(0, 10_000), who=st.sampled_from(NAMES + ["requester"] * 4))
    def cancel(self, pick, who):
        request = self.pick_request(pick)
        self.cancel_as(request, request.requester.username if who == "requester" else who)

    @precondition(lambda self: self.filed)
    @rule(pick=st.integers(0, 10_000), choice=st.integers(0, 10_000))
    def cancel_as_the_requester_or_an_admin(self, pick, choice):
        """Cancellations too, not only when a random member happens to be allowed."""
        request = self.pick_request(pick)
        allowed = [request.requester.username] + [p.name for p in PEOPLE if Role.ADMIN in p.roles]
        self.cancel_as(request, allowed[choice % len(allowed)])

    def cancel_as(self, request: DeletionRequest, who: str) -> None:
        person = BY_NAME[who]
        if request.requester.username != who and Role.ADMIN not in person.roles:
            expected = PermissionDenied
        elif request.status not in (RequestStatus.PENDING, RequestStatus.APPROVED):
            expected = Conflict
        else:
            expected = None
        refused = outcome_of(lambda: do_cancel_request(request, acting_user=self.members[who]))
        assert refused is expected, ("cancel", who, request.pk, request.status, refused)
        event(f"cancel: {refused.__name__ if refused else 'done'}")

    # --- policies and holds -------------------------------------------------------------

    @rule(
        who=st.sampled_from(["admin", "admin", "sec_admin", "manager", "security"]),
        batch=st.lists(st.sampled_from(APPROVER_ROLES), min_size=1, max_size=3),
        server=st.lists(st.sampled_from(APPROVER_ROLES), min_size=1, max_size=3),
    )
    def change_approval_chains(self, who, batch, server):
        changes = {"approval_chains": {"batch": batch, "server": server}}
        before = get_policy("approval_chains")
        refused = outcome_of(
            lambda: do_update_policies(
                actor=self.members[who], changes=changes, verified_second_factor=True
            )
        )
        if Role.ADMIN not in BY_NAME[who].roles:
            assert refused is PermissionDenied
        elif len(server) < 2:
            assert refused is ValidationError
        else:
            assert refused is None
        after = get_policy("approval_chains")
        assert after == (before if refused else changes["approval_chains"])

    @rule(
        who=st.sampled_from(["security", "sec_admin", "manager"]),
        chat=st.sampled_from([None, *CHAT_KEYS]),
        department=st.sampled_from([None, *DEPARTMENTS]),
    )
    def place_hold(self, who, chat, department):
        holds = []
        refused = outcome_of(
            lambda: holds.append(
                do_place_hold(
                    acting_user=self.members[who],
                    kind="legal",
                    reason="诉讼保全",
                    conversations=[self.chats[chat]] if chat else [],
                    departments=[self.departments[department]] if department else [],
                    verified_second_factor=True,
                )
            )
        )
        if Role.SECURITY not in BY_NAME[who].roles:
            assert refused is PermissionDenied
        elif not chat and not department:
            assert refused is ValidationError
        else:
            assert refused is None
            self.holds[holds[0].pk] = (chat, department)

    @precondition(lambda self: self.holds)
    @rule(pick=st.integers(0, 10_000))
    def release_hold(self, pick):
        pk = sorted(self.holds)[pick % len(self.holds)]
        del self.holds[pk]
        do_release_hold(
            Hold.objects.get(pk=pk),
            acting_user=self.members["security"],
            reason="结案",
            verified_second_factor=True,
        )

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def requests_are_consistent(self) -> None:
        step_events = Counter(
            (int(target_id), details["step"])
            for target_id, details in AuditEvent.objects.filter(
                event_type=EventType.REQUEST_STEP_APPROVED
            ).values_list("target_id", "details")
        )
        approved_events = Counter(
            int(t)
            for t in AuditEvent.objects.filter(event_type=EventType.REQUEST_APPROVED).values_list(
                "target_id", flat=True
            )
        )
        requests = DeletionRequest.objects.select_related("scope_root").prefetch_related("steps")
        assert set(requests.values_list("pk", flat=True)) == set(self.filed)
        for request in requests:
            self.check_request(request, step_events, approved_events)

    def check_request(self, request, step_events, approved_events) -> None:
        steps = sorted(request.steps.all(), key=lambda s: s.order)
        statuses = [s.status for s in steps]
        filed = self.filed[request.pk]
        assert request.method == filed["method"]
        if request.method == RequestMethod.PERSONAL:
            assert steps == []
            assert request.status == RequestStatus.COMPLETED
            return
        assert steps, request

        decided = [s for s in steps if s.approver_id is not None]
        approvers = [s.approver_id for s in decided]
        assert len(approvers) == len(set(approvers)), ("one person, two steps", request.pk)
        assert request.requester_id not in approvers, ("approved own request", request.pk)
        for step in steps:
            if step.role == Role.MANAGER:
                # The step's department holds the whole scope: its managers manage it all.
                assert step.department_id is not None
                assert request.scope_root is not None
                assert request.scope_root.path.startswith(
                    self.paths[self.dept_key[step.department_id]]
                )
            if step.approver_id is not None:
                person = self.by_pk[step.approver_id]
                assert self.may_hold_step(person, step), (request.pk, step.order, person.name)
                assert step.status in (StepStatus.APPROVED, StepStatus.REJECTED)
                assert step.decided_at is not None
            else:
                assert step.status in (StepStatus.WAITING, StepStatus.PENDING, StepStatus.CANCELLED)
            if step.status == StepStatus.APPROVED:
                assert step_events[(request.pk, step.order)] == 1, (request.pk, step.order)
            else:
                assert step_events[(request.pk, step.order)] == 0, (request.pk, step.order)

        all_approved = all(s == StepStatus.APPROVED for s in statuses)
        assert approved_events[request.pk] == (1 if all_approved else 0)
        if request.status == RequestStatus.APPROVED:
            REACHED["approved"] += 1
            assert all_approved, (request.pk, statuses)
            assert len(steps) >= len(filed["chain"]), (request.pk, len(steps), filed["chain"])
            assert request.scheduled_for is not None and request.decided_at is not None
            assert request.scheduled_for >= request.decided_at
        elif request.status == RequestStatus.REJECTED:
            REACHED["rejected"] += 1
            assert statuses.count(StepStatus.REJECTED) == 1, statuses
            k = statuses.index(StepStatus.REJECTED)
            assert set(statuses[:k]) <= {StepStatus.APPROVED}
            assert set(statuses[k + 1 :]) <= {StepStatus.CANCELLED}
        elif request.status == RequestStatus.PENDING:
            assert statuses.count(StepStatus.PENDING) == 1, statuses
            k = statuses.index(StepStatus.PENDING)
            assert set(statuses[:k]) <= {StepStatus.APPROVED}
            assert set(statuses[k + 1 :]) <= {StepStatus.WAITING}
        elif request.status == RequestStatus.CANCELLED:
            REACHED["cancelled"] += 1
            assert not {StepStatus.PENDING, StepStatus.WAITING} & set(statuses)
            assert StepStatus.REJECTED not in statuses
        else:
            raise AssertionError(f"request {request.pk} is {request.status}")

    @invariant()
    def inboxes_show_exactly_the_steps_one_may_decide(self) -> None:
        """The approvals inbox and the notification list agree with the oracle."""
        open_requests = list(
            DeletionRequest.objects.filter(status=RequestStatus.PENDING).prefetch_related("steps")
        )
        for person in PEOPLE:
            member = self.members[person.name]
            expected = {
                min(
                    (s for s in r.steps.all() if s.status == StepStatus.PENDING),
                    key=lambda s: s.order,
                ).pk
                for r in open_requests
                if self.expected_decision(r, person) is None
            }
            inbox = set(steps_awaiting(member).values_list("pk", flat=True))
            assert inbox == expected, (person.name, inbox, expected)
        for request in open_requests:
            step = next(s for s in request.steps.all() if s.status == StepStatus.PENDING)
            notified = {m.username for m in eligible_approvers(step)}
            oracle = {p.name for p in PEOPLE if self.expected_decision(request, p) is None}
            assert notified == oracle, (request.pk, notified, oracle)

    @invariant()
    def audit_chain_is_intact(self) -> None:
        report = verify_chain()
        assert report.intact, report


SETTINGS = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_request_workflow_keeps_its_invariants():
    REACHED.clear()
    run_state_machine_as_test(RequestWorkflow, settings=SETTINGS)
    # The run explored decided requests, not only refusals.
    assert REACHED["approved"] > 0, REACHED
    # Every example was rolled back: nothing leaks into the next one or the next test.
    assert not DeletionRequest.objects.exists()
    assert not Department.objects.exists()
    assert get_policy("approval_chains") == DEFAULTS["approval_chains"]


@seed(20261101)
class SeededRequestWorkflow(RequestWorkflow):
    """The same machine with a fixed seed, so the run below is reproducible."""


def test_a_fixed_seed_run_reaches_every_decision():
    REACHED.clear()
    run_state_machine_as_test(SeededRequestWorkflow, settings=settings(SETTINGS, max_examples=10))
    assert REACHED["approved"] > 0, REACHED
    assert REACHED["rejected"] > 0, REACHED
    assert REACHED["cancelled"] > 0, REACHED
