"""Seed the global orderable rules: services (HCPCS A0 transport, G professional services, T state services)
and requests of no known system are not products; LOINC-coded ServiceRequests are orderable (a collection kit);
DeviceRequests are orderable (the clinician picks a product); other ServiceRequests are services."""

from django.db import migrations

HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
LOINC = "http://loinc.org"

RULES = [
    # resource type, system, code prefix, orderable, reason
    ("", HCPCS, "A0", False, "Ambulance and transport are services, not something this app ships."),
    ("", HCPCS, "G", False, "HCPCS G codes are professional services (for example home-health certification)."),
    ("", HCPCS, "T", False, "HCPCS T codes are services billed to state programs."),
    ("DeviceRequest", "", "", True, ""),
    ("ServiceRequest", LOINC, "", True, ""),
    ("ServiceRequest", "", "", False, "This service is not ordered through this app."),
]


def seed(apps, schema_editor):
    rule = apps.get_model("catalog", "OrderableRule")
    for resource_type, system, prefix, orderable, reason in RULES:
        rule.objects.update_or_create(
            site=None,
            resource_type=resource_type,
            system=system,
            code_prefix=prefix,
            defaults={"orderable": orderable, "reason": reason},
        )


def unseed(apps, schema_editor):
    apps.get_model("catalog", "OrderableRule").objects.filter(site=None).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0003_orderablerule")]
    operations = [migrations.RunPython(seed, unseed)]
