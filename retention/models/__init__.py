"""Qingli's models: the chat-record store, and the governance of its deletion."""

from retention.models.governance import (
    ConversationHide,
    Hold,
    HoldKind,
    Notification,
    PersonalRemoval,
    Policy,
    QuotaGrant,
)
from retention.models.records import (
    Attachment,
    Conversation,
    ConversationKind,
    DataKey,
    Department,
    Member,
    Message,
    Participant,
    Sensitivity,
    SignInDay,
    attachment_path,
)
from retention.models.requests import (
    ApprovalStep,
    DeletionRequest,
    RequestConversation,
    RequestMethod,
    RequestStatus,
    StepStatus,
)

__all__ = [
    "ApprovalStep",
    "Attachment",
    "Conversation",
    "ConversationHide",
    "ConversationKind",
    "DataKey",
    "DeletionRequest",
    "Department",
    "Hold",
    "HoldKind",
    "Member",
    "Message",
    "Notification",
    "Participant",
    "PersonalRemoval",
    "Policy",
    "QuotaGrant",
    "RequestConversation",
    "RequestMethod",
    "RequestStatus",
    "Sensitivity",
    "SignInDay",
    "StepStatus",
    "attachment_path",
]
