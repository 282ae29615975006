"""URLs of the intake, mounted at ``/intake/``: the per-site FHIR notification endpoint."""

from django.urls import URLPattern, path

from healthcommerce.intake import views

app_name = "intake"
urlpatterns: list[URLPattern] = [
    path("fhir/<uuid:site_id>/notify", views.fhir_notify, name="fhir-notify"),
]
