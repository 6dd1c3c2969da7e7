from django.urls import path

from retention.web import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("signin/", views.SignInView.as_view(), name="login"),
    path("signout/", views.SignOutView.as_view(), name="logout"),
    path("conversations/", views.conversation_list, name="conversations"),
    path(
        "conversations/<int:conversation_id>/",
        views.conversation_detail,
        name="conversation",
    ),
]
