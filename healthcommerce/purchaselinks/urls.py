"""Patient pages, mounted under ``/p/``: ``/p/<token>/`` (the link in the message: binds the session, then
redirects) and the token-less pages bound to that session. No PHI is in any URL."""

from django.urls import path

from healthcommerce.purchaselinks import views

app_name = "purchaselinks"

urlpatterns = [
    path("verify/", views.link_verify, name="verify"),
    path("confirm/", views.link_confirm, name="confirm"),
    path("track/", views.link_track, name="track"),
    path("address/", views.link_address, name="address"),
    path("pay/", views.link_pay, name="pay"),
    path("terms/", views.link_terms, name="terms"),
    path("language/", views.link_language, name="language"),
    path("<str:token>/", views.link_start, name="start"),
]
