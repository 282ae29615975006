"""CDS Hooks URLs at the root: ``/cds-services`` and ``/cds-services/<id>`` (CDS Hooks 2.0 "Discovery")."""

from django.urls import path

from healthcommerce.cdshooks import views

app_name = "cdshooks"
urlpatterns = [
    path("cds-services", views.discovery, name="discovery"),
    path("cds-services/<slug:service_id>", views.service, name="service"),
]
