"""Patient pages, mounted under ``/p/``; the token in the path is the capability, and no PHI is in the URL."""

from django.urls import path

from healthcommerce.purchaselinks import views

app_name = "purchaselinks"

urlpatterns = [
    path("<str:token>/", views.link_start, name="start"),
    path("<str:token>/confirm/", views.link_confirm, name="confirm"),
    path("<str:token>/track/", views.link_track, name="track"),
]
