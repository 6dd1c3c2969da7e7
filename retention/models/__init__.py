"""Qingli's models: the chat-record store, and the governance of its deletion."""

from retention.models.execution import (
    HIDING_STATES,
    Execution,
    ExecutionKind,
    ExecutionStatus,
    Tombstone,
    TombstoneState,
)
from retention.models.exports import Export, ExportFormat, ExportStatus
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
from retention.models.rules import RetentionRule, RuleAction, RuleStatus
from retention.models.tokens import ApiToken

__all__ = [
    "HIDING_STATES",
    "ApiToken",
    "ApprovalStep",
    "Attachment",
    "Conversation",
    "ConversationHide",
    "ConversationKind",
    "DataKey",
    "DeletionRequest",
    "Execution",
    "ExecutionKind",
    "ExecutionStatus",
    "Export",
    "ExportFormat",
    "ExportStatus",
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
    "RetentionRule",
    "RuleAction",
    "RuleStatus",
    "Sensitivity",
    "SignInDay",
    "StepStatus",
    "Tombstone",
    "TombstoneState",
    "attachment_path",
]
