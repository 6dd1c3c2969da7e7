from django.urls import path

from retention.api import views
from retention.api.ingest import IngestMessagesView

urlpatterns = [
    path("auth/token/", views.ObtainTokenView.as_view(), name="api-token"),
    path("me/", views.MeView.as_view(), name="api-me"),
    path("departments/", views.DepartmentListView.as_view(), name="api-departments"),
    path("conversations/", views.ConversationListView.as_view(), name="api-conversations"),
    path(
        "conversations/<int:conversation_id>/",
        views.ConversationDetailView.as_view(),
        name="api-conversation",
    ),
    path(
        "conversations/<int:conversation_id>/messages/",
        views.ConversationMessagesView.as_view(),
        name="api-conversation-messages",
    ),
    path("ingest/messages/", IngestMessagesView.as_view(), name="api-ingest-messages"),
]
