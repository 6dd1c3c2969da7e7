"""Output serializers of the read API: they shape data, they decide nothing."""

from __future__ import annotations

from rest_framework import serializers

from retention.api.inputs import StrictSerializer
from retention.models import ApiToken, Conversation, Department, Member, Message


class TokenRequestSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    otp = serializers.CharField(
        max_length=12,
        required=False,
        allow_blank=True,
        help_text=(
            "The 6-digit code of the member's authenticator. Required when the member has "
            "one; only a token issued with it may approve, hold, change policies or restore."
        ),
    )
    name = serializers.CharField(
        max_length=100, required=False, allow_blank=True, help_text="What the token is for."
    )


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="The key: shown this once, never stored.")
    id = serializers.IntegerField()
    name = serializers.CharField()
    second_factor_verified = serializers.BooleanField()


class ApiTokenSerializer(serializers.ModelSerializer):
    member = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "member",
            "name",
            "prefix",
            "second_factor_verified",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]


class DepartmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Department
        fields = ["id", "name", "parent", "depth"]


class MeSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField()
    department = DepartmentSerializer(allow_null=True)

    class Meta:
        model = Member
        fields = ["id", "username", "display_name", "roles", "department"]

    def get_roles(self, member: Member) -> list[str]:
        return sorted(member.roles)


class ParticipantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Member
        fields = ["id", "username", "display_name"]


class ConversationSerializer(serializers.ModelSerializer):
    department_name = serializers.CharField(source="department.name", read_only=True)
    participant_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Conversation
        fields = [
            "id",
            "kind",
            "title",
            "department",
            "department_name",
            "external_party",
            "participant_count",
            "created_at",
            "last_message_at",
        ]


class ConversationDetailSerializer(ConversationSerializer):
    participants = ParticipantSerializer(many=True, read_only=True)
    message_count = serializers.IntegerField(read_only=True)
    can_read_bodies = serializers.BooleanField(read_only=True)
    key_destroyed = serializers.BooleanField(read_only=True)

    class Meta(ConversationSerializer.Meta):
        fields = [
            *ConversationSerializer.Meta.fields,
            "participants",
            "message_count",
            "can_read_bodies",
            "key_destroyed",
        ]


class MessageSerializer(serializers.ModelSerializer):
    body = serializers.SerializerMethodField()
    attachment_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "sender",
            "sender_name",
            "sent_at",
            "body",
            "body_bytes",
            "sensitivity",
            "sensitivity_reasons",
            "attachment_count",
        ]

    def get_body(self, message: Message) -> str | None:
        """The plaintext, or null where the viewer may not read bodies or the key is gone."""
        return self.context["bodies"].get(message.pk)
