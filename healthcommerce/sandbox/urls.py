"""URLs of the sandbox EHR, mounted at ``/sandbox/`` (FHIR base ``/sandbox/fhir``)."""

from django.urls import URLPattern, path, re_path

from healthcommerce.sandbox import views

app_name = "sandbox"
urlpatterns: list[URLPattern] = [
    path("", views.ehr, name="ehr"),
    path("launch", views.launch, name="launch"),
    path("frame", views.frame, name="frame"),
    path("cds", views.cds, name="cds"),
    path("cds/launch", views.cds_launch, name="cds-launch"),
    path("hl7/send", views.send_hl7, name="send-hl7"),
    path("notify", views.send_notification, name="send-notification"),
    path("clearinghouse/x12", views.clearinghouse_x12, name="clearinghouse-x12"),
    path("clearinghouse/eligibility/v3", views.clearinghouse_eligibility, name="clearinghouse-eligibility"),
    path("smart-style.json", views.smart_style, name="smart-style"),
    path("oauth/authorize", views.authorize, name="authorize"),
    path("oauth/token", views.token, name="token"),
    path("oauth/jwks", views.jwks, name="jwks"),
    path("fhir/", views.fhir_root, name="fhir-base"),
    path("fhir/.well-known/smart-configuration", views.smart_configuration, name="smart-configuration"),
    path("fhir/.well-known/openid-configuration", views.openid_configuration, name="openid-configuration"),
    path("fhir/metadata", views.fhir_metadata, name="fhir-metadata"),
    re_path(r"^fhir/(?P<resource_type>[A-Za-z]+)$", views.fhir_type_or_create, name="fhir-type"),
    re_path(r"^fhir/(?P<resource_type>[A-Za-z]+)/(?P<fhir_id>[^/]+)$", views.fhir_instance, name="fhir-instance"),
]
