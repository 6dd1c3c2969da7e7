"""API authentication by our own tokens: ``Authorization: Token <key>``, as with DRF's
authtoken before, but several named tokens per member, hashed at rest and revocable."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from retention.access.tokens import authenticate_key


class ApiTokenAuthentication(TokenAuthentication):
    """``request.auth`` is the ApiToken: whether it was issued after a second-factor check
    decides if it may take the sensitive actions."""

    keyword = "Token"

    def authenticate_credentials(self, key: str):
        token = authenticate_key(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked token."))
        return token.member, token


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                'Send "Token <key>". Get a key from POST /api/v1/auth/token/ (with "otp" '
                "for a token that may approve) or on your security page."
            ),
        }
