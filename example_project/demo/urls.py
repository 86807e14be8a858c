from __future__ import annotations

from django.urls import path

from . import views

app_name = "demo"
urlpatterns = [
    path("", views.page, name="page"),
    # The paths of the emailed links (KINWISE_AUTH's *_PATH defaults).
    path("verify-email", views.page, name="verify-email"),
    path("reset-password", views.page, name="reset-password"),
    path("confirm-email-change", views.page, name="confirm-email-change"),
    path("dev/mailbox/", views.mailbox, name="mailbox"),
    path("dev/mailbox.json", views.mailbox_json, name="mailbox-json"),
]
