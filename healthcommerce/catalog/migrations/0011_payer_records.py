"""Turn the payer rules' free-text matches into payer records (issue 21 "payer identity").

- The seeded global rules (0006: contains "medicaid" -> covered, contains "medicare" -> 20% coinsurance) become
  ``plan_type`` rules (medicaid, medicare). So that orders already naming "Medicare" or "Medicaid" keep their price,
  each also gets a global payer record of that plan type ("Medicare", "Medicaid", the old pattern as an alias).
- Any other ``contains`` rule becomes a payer record at the rule's site (or for every site): name = the pattern
  title-cased, alias = the pattern, plan type guessed from the words (medicare advantage / part c, medicare, medicaid,
  tricare; else other); the rule then matches that payer (``payer``).
- A ``regex`` rule cannot be turned into records safely: it is deactivated with its pattern kept, and
  ``manage.py check`` lists it (``catalog.W001``) until an admin re-points it.
Converted rules keep their ``pattern`` as a record of what they matched (orders 0014 reads it to migrate orders).
The staff roles (core/roles.py) get the payer records' permissions: ``support`` views them, ``admin`` may do
everything (permissions created first, as core's 0001_staff_roles does).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SEEDED = {"medicaid": "medicaid", "medicare": "medicare"}


def plan_type_of(pattern):
    text = pattern.casefold()
    if "advantage" in text or "part c" in text:
        return "medicare_advantage"
    for word in ("medicaid", "medicare", "tricare"):
        if word in text:
            return word
    return "other"


def payer_record(Payer, site_id, pattern, plan_type):
    name = " ".join(pattern.split()).title()[:200]
    payer = Payer.objects.filter(site_id=site_id, name=name).first()
    if payer is None:
        return Payer.objects.create(site_id=site_id, name=name, plan_type=plan_type, aliases=pattern.strip())
    aliases = [line for line in payer.aliases.splitlines() if line.strip()]
    if pattern.strip().casefold() not in {a.strip().casefold() for a in aliases}:
        payer.aliases = "\n".join([*aliases, pattern.strip()])
        payer.save(update_fields=["aliases"])
    return payer


def convert(apps, schema_editor):
    Payer = apps.get_model("catalog", "Payer")
    PayerRule = apps.get_model("catalog", "PayerRule")
    for rule in PayerRule.objects.filter(match__in=["contains", "regex"]).order_by("created_at"):
        if rule.match == "regex":
            rule.is_active = False
            rule.save(update_fields=["is_active"])
            continue
        pattern = rule.pattern.strip()
        if not pattern:  # a contains rule without a pattern matched every payer
            rule.match = "any_payer"
            rule.save(update_fields=["match"])
            continue
        seeded = SEEDED.get(pattern.casefold()) if rule.site_id is None else None
        payer = payer_record(Payer, rule.site_id, pattern, seeded or plan_type_of(pattern))
        if seeded:
            rule.match, rule.plan_type = "plan_type", seeded
            rule.save(update_fields=["match", "plan_type"])
        else:
            rule.match, rule.payer = "payer", payer
            rule.save(update_fields=["match", "payer"])


def revert(apps, schema_editor):
    PayerRule = apps.get_model("catalog", "PayerRule")
    for rule in PayerRule.objects.filter(match__in=["payer", "plan_type"]):
        pattern = rule.pattern or (rule.payer.name if rule.payer_id else rule.plan_type)
        rule.match, rule.pattern, rule.payer, rule.plan_type = "contains", pattern.casefold(), None, ""
        rule.save(update_fields=["match", "pattern", "payer", "plan_type"])
    apps.get_model("catalog", "Payer").objects.all().delete()


def roles_grant(apps, schema_editor):
    catalog = apps.get_app_config("catalog")
    catalog.models_module = True
    create_permissions(catalog, apps=apps, verbosity=0)
    catalog.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    payer = Permission.objects.filter(content_type__app_label="catalog", content_type__model="payer")
    for group in Group.objects.filter(name="support"):
        group.permissions.add(*payer.filter(codename="view_payer"))
    for group in Group.objects.filter(name="admin"):
        group.permissions.add(*payer)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0010_payer"), ("core", "0001_staff_roles")]
    operations = [migrations.RunPython(convert, revert), migrations.RunPython(roles_grant, migrations.RunPython.noop)]
