"""``manage.py ehr_site``: registering a site from the command line."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from healthcommerce.ehr.models import EHRSite

pytestmark = pytest.mark.django_db


def test_it_registers_a_confidential_symmetric_site(capsys):
    call_command(
        "ehr_site",
        "add",
        "--name",
        "Test",
        "--iss",
        "https://fhir.example.org/api/FHIR/R4/",
        "--client-id",
        "abc",
        "--client-secret",
        "s3:cr%t",
    )
    site = EHRSite.objects.get()
    assert site.iss == "https://fhir.example.org/api/FHIR/R4"
    assert site.auth_method == EHRSite.AuthMethod.CLIENT_SECRET_BASIC
    assert "Registered" in capsys.readouterr().out


def test_it_registers_an_asymmetric_epic_site(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    call_command(
        "ehr_site",
        "add",
        "--name",
        "Epic",
        "--iss",
        "https://epic.example.org/FHIR/api/FHIR/R4",
        "--client-id",
        "abc",
        "--private-key",
        str(pem),
        "--key-id",
        "k1",
        "--epic",
    )
    site = EHRSite.objects.get()
    assert site.auth_method == EHRSite.AuthMethod.PRIVATE_KEY_JWT
    assert site.quirks["epic_client_id_header"] is True


def test_it_refuses_a_plain_http_iss():
    with pytest.raises(CommandError):
        call_command("ehr_site", "add", "--name", "X", "--iss", "http://fhir.example.org/r4", "--client-id", "abc")


def test_re_adding_a_site_without_epic_clears_the_epic_quirks_and_says_what_changed(capsys):
    args = ["ehr_site", "add", "--name", "Epic", "--iss", "https://epic.example.org/FHIR/api/FHIR/R4",
            "--client-id", "abc", "--client-secret", "first-secret"]  # fmt: skip
    call_command(*args, "--epic")
    assert EHRSite.objects.get().quirks == {"epic_client_id_header": True, "authorize_post": True}
    capsys.readouterr()

    call_command(*args[:-1], "second-secret")

    assert EHRSite.objects.get().quirks == {}
    out = capsys.readouterr().out
    assert 'quirks: {"authorize_post": true, "epic_client_id_header": true} -> {}' in out
    assert "client_secret: replaced" in out and "second-secret" not in out and "first-secret" not in out
    call_command(*args[:-1], "second-secret")
    assert "No changes." in capsys.readouterr().out


def test_each_stage_setting_has_a_flag_and_a_flag_left_out_keeps_the_stored_value(capsys):
    from healthcommerce.ehr.sitefeatures import site_settings_defaults, site_settings_values

    base = ["ehr_site", "add", "--name", "Flags", "--iss", "https://flags.example/fhir", "--client-id", "f"]
    call_command(
        *base,
        "--writeback",
        "communication",
        "--shipto-reread",
        "--sms-enabled",
        "--patient-support-phone",
        "(207) 555-0100",
        "--cds-hooks-enabled",
        "--cds-issuers",
        "https://flags.example/fhir",
        "--cds-jku-allowlist",
        "https://flags.example/jwks",
    )
    site = EHRSite.objects.get()
    expected = {
        "writeback": "communication",
        "shipto_reread": True,
        "sms_enabled": True,
        "patient_support_phone": "(207) 555-0100",
        "cds_hooks_enabled": True,
        "cds_issuers": ["https://flags.example/fhir"],
        "cds_jku_allowlist": ["https://flags.example/jwks"],
    }
    expected = site_settings_defaults() | expected  # the settings no flag was given for (intake's...) keep defaults
    assert site_settings_values(site) == expected

    capsys.readouterr()
    call_command(*base, "--no-sms-enabled")
    assert site_settings_values(EHRSite.objects.get()) == expected | {"sms_enabled": False}
    assert "sms_enabled: true -> false" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command(*base, "--writeback", "fax")
