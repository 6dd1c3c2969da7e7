"""Retention rules over the API, and a conversation's effective policy."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from retention.access.predicates import may_read_rules
from retention.access.second_factor import verified
from retention.api.inputs import StrictSerializer, id_list
from retention.api.parsers import JSONParser
from retention.api.requests import CONFLICT, FIELD_ERRORS, FORBIDDEN, NOT_FOUND, visible_among
from retention.models import (
    Conversation,
    ConversationKind,
    Department,
    RetentionRule,
    RuleAction,
)
from retention.records import selectors
from retention.rules.actions import (
    do_approve_rule,
    do_create_rule,
    do_preview_rule,
    do_propose,
    do_relax_rule,
    require_admin,
)
from retention.rules.matching import effective_policy


class RuleSerializer(serializers.ModelSerializer):
    department = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="Null: every department."
    )
    excluded_conversations = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    proposed_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    approved_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    status = serializers.CharField(
        help_text="draft, pending (awaits a second admin), scheduled (in its grace period), "
        "active or disabled"
    )

    class Meta:
        model = RetentionRule
        fields = [
            "id",
            "name",
            "department",
            "kind",
            "excluded_conversations",
            "keep_days",
            "action",
            "status",
            "created_by",
            "created_at",
            "proposed_by",
            "proposed_keep_days",
            "proposed_at",
            "approved_by",
            "approved_at",
            "effective_from",
            "next_keep_days",
            "next_keep_from",
            "last_preview",
            "last_preview_at",
            "last_run_at",
            "last_run_ok",
            "last_run_error",
        ]
        extra_kwargs = {
            "last_preview": {
                "help_text": "The last dry run: messages, conversations, attachments, bytes "
                "(message bodies and attachments), high_sensitivity and the same per "
                "department (by_department), what holds and protection leave (excluded), "
                "keep_days, cutoff and computed_at. Empty before the first dry run."
            }
        }


class RuleInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120)
    keep_days = serializers.IntegerField(min_value=1, max_value=36500)
    action = serializers.ChoiceField(choices=RuleAction.choices)
    department = serializers.PrimaryKeyRelatedField(
        queryset=Department.objects.all(), required=False, allow_null=True, default=None
    )
    kind = serializers.ChoiceField(
        choices=[("", "any"), *ConversationKind.choices], required=False, default=""
    )
    excluded_conversations = id_list(default=list, help_text="Conversations the rule skips.")


class ProposeInputSerializer(StrictSerializer):
    keep_days = serializers.IntegerField(
        min_value=1,
        max_value=36500,
        required=False,
        help_text="For an active rule: the shorter keep to propose.",
    )


class RelaxInputSerializer(StrictSerializer):
    keep_days = serializers.IntegerField(min_value=1, max_value=36500, required=False)
    disable = serializers.BooleanField(required=False, default=False)

    def validate(self, data: dict) -> dict:
        if not data.get("disable") and "keep_days" not in data:
            raise serializers.ValidationError(
                {"keep_days": [_("Give a longer keep, or disable the rule.")]}
            )
        return data


class EffectivePolicySerializer(serializers.Serializer):
    rule = serializers.IntegerField(allow_null=True, help_text="The rule that governs it.")
    rule_name = serializers.CharField(allow_null=True)
    keep_days = serializers.IntegerField(allow_null=True)
    action = serializers.CharField(allow_null=True)
    held = serializers.BooleanField(help_text="On hold: no rule touches it.")
    matching_rules = serializers.ListField(child=serializers.IntegerField())
    why = serializers.CharField()


def _require_reader(request: Request) -> None:
    if not may_read_rules(request.user):
        raise PermissionDenied(_("Your roles do not allow this action."))


def _rule(request: Request, rule_id: int) -> RetentionRule:
    _require_reader(request)
    return get_object_or_404(RetentionRule.objects.select_related("department"), pk=rule_id)


def _render(rule: RetentionRule) -> Response:
    rule.refresh_from_db()
    return Response(RuleSerializer(rule).data)


RULE_RESPONSES = {
    200: RuleSerializer,
    400: FIELD_ERRORS,
    403: FORBIDDEN,
    404: NOT_FOUND,
    409: CONFLICT,
}


class RuleListView(generics.ListAPIView):
    """Retention rules (admins, security officers and auditors); POST creates a draft."""

    parser_classes = [JSONParser]
    serializer_class = RuleSerializer
    queryset = RetentionRule.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self) -> QuerySet[RetentionRule]:
        _require_reader(self.request)
        return RetentionRule.objects.prefetch_related("excluded_conversations").order_by("id")

    @extend_schema(tags=["retention rules"])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=RuleInputSerializer,
        responses={201: RuleSerializer, 400: FIELD_ERRORS, 403: FORBIDDEN},
        tags=["retention rules"],
    )
    def post(self, request: Request) -> Response:
        """Create a rule as a draft: it does nothing until proposed and approved."""
        # The role first: a refused member learns nothing about which ids exist.
        require_admin(request.user)
        form = RuleInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        rule = do_create_rule(
            acting_user=request.user,
            name=data["name"],
            keep_days=data["keep_days"],
            action=data["action"],
            department=data["department"],
            kind=data["kind"],
            excluded=visible_among(
                Conversation.objects.all(), data["excluded_conversations"], "excluded_conversations"
            ),
        )
        return Response(RuleSerializer(rule).data, status=status.HTTP_201_CREATED)


class RuleDetailView(APIView):
    @extend_schema(
        responses={200: RuleSerializer, 403: FORBIDDEN, 404: NOT_FOUND}, tags=["retention rules"]
    )
    def get(self, request: Request, rule_id: int) -> Response:
        return _render(_rule(request, rule_id))


class RulePreviewView(APIView):
    """The dry run: exactly what the rule would take today, by department (admins)."""

    @extend_schema(request=None, responses=RULE_RESPONSES, tags=["retention rules"])
    def post(self, request: Request, rule_id: int) -> Response:
        rule = _rule(request, rule_id)
        do_preview_rule(rule, acting_user=request.user)
        return _render(rule)


class RuleProposeView(APIView):
    """Ask for the rule to be enabled, or an active rule to keep less (after a dry run);
    a second admin approves."""

    parser_classes = [JSONParser]

    @extend_schema(
        request=ProposeInputSerializer, responses=RULE_RESPONSES, tags=["retention rules"]
    )
    def post(self, request: Request, rule_id: int) -> Response:
        rule = _rule(request, rule_id)
        form = ProposeInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        do_propose(rule, acting_user=request.user, keep_days=form.validated_data.get("keep_days"))
        return _render(rule)


class RuleApproveView(APIView):
    """A second admin approves; the change bites after the grace period."""

    @extend_schema(request=None, responses=RULE_RESPONSES, tags=["retention rules"])
    def post(self, request: Request, rule_id: int) -> Response:
        rule = _rule(request, rule_id)
        do_approve_rule(rule, acting_user=request.user, verified_second_factor=verified(request))
        return _render(rule)


class RuleRelaxView(APIView):
    """Keep longer, or disable: both delete less and apply at once."""

    parser_classes = [JSONParser]

    @extend_schema(request=RelaxInputSerializer, responses=RULE_RESPONSES, tags=["retention rules"])
    def post(self, request: Request, rule_id: int) -> Response:
        rule = _rule(request, rule_id)
        form = RelaxInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        do_relax_rule(
            rule,
            acting_user=request.user,
            verified_second_factor=verified(request),
            keep_days=form.validated_data.get("keep_days"),
            disable=form.validated_data["disable"],
        )
        return _render(rule)


def effective_policy_data(conversation: Conversation) -> dict:
    effective = effective_policy(conversation)
    return {
        "rule": effective.rule.pk if effective.rule else None,
        "rule_name": effective.rule.name if effective.rule else None,
        "keep_days": effective.keep_days,
        "action": effective.rule.action if effective.rule else None,
        "held": effective.held,
        "matching_rules": [r.pk for r in effective.matching],
        "why": str(effective.why),
    }


class EffectivePolicyView(APIView):
    """What happens to a conversation's records, by which rule, and why."""

    @extend_schema(
        responses={200: EffectivePolicySerializer, 404: NOT_FOUND}, tags=["retention rules"]
    )
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation = get_object_or_404(
            selectors.conversations_for(request.user), pk=conversation_id
        )
        return Response(EffectivePolicySerializer(effective_policy_data(conversation)).data)
