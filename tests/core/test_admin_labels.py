"""What the admin calls things (healthcommerce/core/adminsite.py, each app's ``verbose_name`` and models): the site
is branded, and no app, model, column or field label has an auto-generated shape (``Launchs``, ``Otp_Totp``,
``Cds jku allowlist``, ``Shipto reread``) that an admin has to decode."""

import re
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.utils import label_for_field
from django.test import Client, RequestFactory

# Written upper case wherever they appear in a label (a word in parentheses is a literal name, e.g. "(kid)").
ACRONYMS = {
    "cds", "ehr", "fhir", "hcpcs", "http", "id", "ip", "jku", "jwk", "jwks", "npi", "otp", "pem", "phi", "pkce", "sku",
    "smart", "sms", "totp", "uri", "url",
}  # fmt: skip
# Field-name fragments that are not words: each needs its real name in the label.
CLIPPED = {"alg", "iss", "kid", "prev", "seq", "shipto", "writeback", "purchaselinks", "launchs", "t0"}
_WORD = re.compile(r"[A-Za-z0-9_]+")


def _problems(label: str) -> list[str]:
    """Return what is wrong with one label: an acronym not in capitals, a clipped name, an underscore, a wrong
    plural (``launchs``) or bare ``cents`` (say "(cents)")."""
    found = []
    text = re.sub(r"\([^)]*\)", "", str(label))  # "(kid)", "(cents)": literal names and units
    for word in _WORD.findall(text):
        if "_" in word:
            found.append(f"{word!r} has an underscore")
        elif word.lower() in ACRONYMS and word != word.upper():
            found.append(f"{word!r} should be {word.upper()}")
        elif word.lower()[:-1] in ACRONYMS and word.endswith("s") and word != f"{word[:-1].upper()}s":
            found.append(f"{word!r} should be {word[:-1].upper()}s")
        elif word.lower() in CLIPPED:
            found.append(f"{word!r} is a clipped name")
        elif word.lower() == "cents":
            found.append("say '(cents)'")
        elif re.search(r"(ch|sh|ss|x)s$", word.lower()):
            found.append(f"{word!r} is a wrong plural")
    return found


def _admin_labels(sees_phi: bool) -> dict[str, str]:
    """Every label the admin shows: app names, model names, list columns, form fields and read-only fields; as
    an admin sees them, or (``sees_phi`` False) as support sees them, PHI columns masked (core/roles.py)."""
    from django.contrib.auth.models import User

    request = RequestFactory().get("/admin/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    request._hc_sees_phi = sees_phi  # type: ignore[attr-defined]
    labels: dict[str, str] = {}
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        where = meta.label
        labels[f"{where} app"] = str(meta.app_config.verbose_name)
        labels[f"{where} name"] = str(meta.verbose_name)
        labels[f"{where} plural"] = str(meta.verbose_name_plural)
        ours = meta.app_config.name.startswith("healthcommerce")
        list_display = list(model_admin.get_list_display(request))
        names: list[Any] = list(list_display)
        form = model_admin.get_form(request)() if ours and sees_phi else None  # support: view only, no form
        if ours:
            names += [f for f in model_admin.get_fields(request) if isinstance(f, str)]
            names += [f.name for f in meta.get_fields() if hasattr(f, "verbose_name") and not f.auto_created]
            for name, field in (form.fields if form is not None else {}).items():
                if field.label:
                    labels[f"{where} form {name}"] = str(field.label)
        for name in names:
            if name in ("action_checkbox", "__str__") or not isinstance(name, str):
                continue
            if name in getattr(model_admin.form, "base_fields", {}) and name not in list_display:
                continue  # a form field: the form shows its own label (checked above)
            labels[f"{where} {name}"] = str(label_for_field(name, model, model_admin, form=form))
        for inline in model_admin.inlines:
            for name in inline.fields or ():
                labels[f"{where} inline {name}"] = str(label_for_field(name, inline.model, inline))
    return labels


def test_the_shape_check_catches_the_labels_the_issue_names() -> None:
    for bad in ("Launchs", "Otp_Totp", "Cds jku allowlist", "Shipto reread", "Fhir user", "Unit price cents"):
        assert _problems(bad), bad
    for good in ("Launches", "Two-factor devices", "CDS Hooks JKU allowlist", "Ship-to re-read", "Key ID (kid)"):
        assert not _problems(good), good


@pytest.mark.parametrize("sees_phi", [True, False], ids=["admin", "support"])
def test_no_admin_label_has_an_auto_generated_shape(db: None, sees_phi: bool) -> None:
    labels = _admin_labels(sees_phi)
    wrong = {where: problems for where, label in labels.items() if (problems := _problems(label))}
    assert not wrong, "\n".join(f"{where}: {problems}" for where, problems in sorted(wrong.items()))


def test_the_admin_is_branded_healthcommerce_not_django(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()
    assert "healthcommerce administration" in page
    assert "<title>Orders, EHR sites and integrations | healthcommerce admin</title>" in page
    assert "Django administration" not in page and "Django site admin" not in page
    login = Client().get("/admin/login/").content.decode()
    assert "healthcommerce administration" in login and "Django" not in login
