"""Sign-in lockouts over the API: admins list them and lift one (audited)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from retention.access import signin
from retention.access.predicates import may_lift_lockouts
from retention.api.inputs import StrictSerializer
from retention.api.parsers import JSONParser
from retention.api.requests import FIELD_ERRORS, FORBIDDEN
from retention.models import Member


class LockoutSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[signin.USERNAME, signin.ADDRESS])
    value = serializers.CharField()
    failures = serializers.IntegerField()
    last_failure = serializers.DateTimeField()
    ends_at = serializers.DateTimeField(help_text="The lockout ends by itself at this moment.")


class LiftLockoutInputSerializer(StrictSerializer):
    username = serializers.CharField(required=False, allow_blank=True, max_length=150)
    ip_address = serializers.IPAddressField(required=False, allow_blank=True)


class LiftedSerializer(serializers.Serializer):
    records_cleared = serializers.IntegerField()


def require_admin(member: Member) -> None:
    if not may_lift_lockouts(member):
        raise PermissionDenied(_("Only an admin may see or lift sign-in lockouts."))


class LockoutListView(APIView):
    """Usernames and addresses locked out of signing in now, the latest first."""

    @extend_schema(responses={200: LockoutSerializer(many=True), 403: FORBIDDEN}, tags=["sign-in"])
    def get(self, request: Request) -> Response:
        require_admin(request.user)
        return Response(LockoutSerializer(signin.active_lockouts(), many=True).data)


class LockoutLiftView(APIView):
    """Clear the failed sign-ins of a username and/or an address: their lockout ends now."""

    parser_classes = [JSONParser]

    @extend_schema(
        request=LiftLockoutInputSerializer,
        responses={200: LiftedSerializer, 400: FIELD_ERRORS, 403: FORBIDDEN},
        tags=["sign-in"],
    )
    def post(self, request: Request) -> Response:
        require_admin(request.user)
        form = LiftLockoutInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        cleared = signin.do_lift_lockout(actor=request.user, **form.validated_data)
        return Response({"records_cleared": cleared})
