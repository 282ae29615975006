"""Seed the default catalog: DME for the HCPCS codes in the Da Vinci fixtures and three collection kits (LOINC/CPT)."""

from django.db import migrations

HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"

PRODUCTS = [
    # sku, name, kind, HCPCS (level II for DME, level I = CPT for lab kits), price (cents), [(system, code)]
    ("DME-O2-STAT", "Stationary compressed gaseous oxygen system (rental)", "device", "E0424", 18900, [(HCPCS, "E0424")]),
    ("DME-CPAP-STD", "CPAP device with humidifier and mask", "device", "E0601", 69900, [(HCPCS, "E0601")]),
    ("DME-RAD-BILEVEL", "Bi-level respiratory assist device (no backup rate)", "device", "E0470", 149900, [(HCPCS, "E0470")]),
    ("DME-BED-FIXED", "Hospital bed, fixed height, with side rails and mattress", "device", "E0250", 129900, [(HCPCS, "E0250")]),
    ("DME-BGM-HOME", "Home blood glucose monitor", "device", "E0607", 4900, [(HCPCS, "E0607")]),
    ("KIT-FIT", "FIT colorectal cancer screening kit (stool, immunochemical)", "kit", "82274", 2500,
     [(LOINC, "29771-3"), (LOINC, "57905-2"), (CPT, "82274")]),
    ("KIT-HBA1C", "HbA1c home collection kit (dried blood spot)", "kit", "83036", 3900, [(LOINC, "4548-4"), (CPT, "83036")]),
    ("KIT-LIPID", "Lipid panel home collection kit (dried blood spot)", "kit", "80061", 4900,
     [(LOINC, "57698-3"), (LOINC, "24331-1"), (CPT, "80061")]),
]


def seed(apps, schema_editor):
    Product = apps.get_model("catalog", "Product")
    CodeMapping = apps.get_model("catalog", "CodeMapping")
    for sku, name, kind, hcpcs, price, codes in PRODUCTS:
        product, _ = Product.objects.update_or_create(
            sku=sku, defaults={"name": name, "kind": kind, "hcpcs_code": hcpcs, "unit_price_cents": price}
        )
        for system, code in codes:
            CodeMapping.objects.update_or_create(site=None, system=system, code=code, defaults={"product": product})


def unseed(apps, schema_editor):
    apps.get_model("catalog", "Product").objects.filter(sku__in=[p[0] for p in PRODUCTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
