"""The EHR site admin never shows a client secret or private key: it says whether each is set, and takes a new
one to replace it (issue 9 "Secrets are write-only in the admin"). Lists are edited one item per line, quirks as
checkboxes, and a bad line is refused by its number."""

import html
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from healthcommerce.cdshooks.models import CdsHooksSite
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import site_feature_fields
from tests.site_settings import settings_form

pytestmark = pytest.mark.django_db
SITES = "/admin/ehr/ehrsite/"
SECRET = "client-secret-never-shown-5e1f"


def new_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


def form(site: EHRSite, **changes: str) -> dict[str, str]:
    """The change form's fields as the page posts them (each stage's settings in its own section, posted by
    ``settings_form``), with ``changes``."""
    stage = {name: changes.pop(name) for name in list(changes) if name in site_feature_fields()}
    data = {
        "name": site.name,
        "iss": site.iss,
        "client_id": site.client_id,
        "auth_method": site.auth_method,
        "key_id": site.key_id,
        "signing_alg": site.signing_alg,
        "scopes": site.scopes,
        "other_quirks": "{}",
        "frame_origins": "",
        "is_active": "on",
        "vendor": site.vendor,
    }
    return data | settings_form(site, **stage) | changes


@pytest.fixture
def site() -> EHRSite:
    return EHRSite.objects.create(
        name="Harbor",
        iss="https://ehr.harbor.example/fhir",
        client_id="hc",
        auth_method=EHRSite.AuthMethod.PRIVATE_KEY_JWT,
        client_secret=SECRET,
        private_key_pem=new_pem(),
    )


def test_the_list_search_and_change_pages_never_show_a_secret_only_whether_it_is_set(admin_client, site) -> None:  # type: ignore[no-untyped-def]
    pem_line = site.private_key_pem.splitlines()[1]
    for url in (SITES, f"{SITES}?q=Harbor", f"{SITES}{site.pk}/change/", f"{SITES}{site.pk}/history/"):
        body = admin_client.get(url).content.decode()
        assert SECRET not in body and pem_line not in body, url
    change = admin_client.get(f"{SITES}{site.pk}/change/").content.decode()
    assert "Client secret" in change and "Private key" in change
    assert change.count(">set<") == 2
    assert 'name="new_client_secret"' in change and 'name="new_private_key_pem"' in change
    empty = EHRSite.objects.create(name="Public", iss="https://public.example/fhir", client_id="p")
    assert admin_client.get(f"{SITES}{empty.pk}/change/").content.decode().count(">not set<") == 2


def test_saving_without_a_new_secret_keeps_the_stored_ones(admin_client, site) -> None:  # type: ignore[no-untyped-def]
    pem = site.private_key_pem
    response = admin_client.post(f"{SITES}{site.pk}/change/", form(site, name="Harbor Health"))

    assert response.status_code == 302, response.content.decode()[:2000]
    saved = EHRSite.objects.get(pk=site.pk)
    assert (saved.name, saved.client_secret, saved.private_key_pem) == ("Harbor Health", SECRET, pem)


def test_a_new_secret_or_key_replaces_the_stored_one_and_remove_clears_it(admin_client, site) -> None:  # type: ignore[no-untyped-def]
    pem = new_pem()
    response = admin_client.post(
        f"{SITES}{site.pk}/change/", form(site, new_client_secret="rotated-secret", new_private_key_pem=pem)
    )
    assert response.status_code == 302
    saved = EHRSite.objects.get(pk=site.pk)
    assert (saved.client_secret, saved.private_key_pem) == ("rotated-secret", pem.strip())

    admin_client.post(f"{SITES}{site.pk}/change/", form(site, remove_client_secret="on"))
    assert EHRSite.objects.get(pk=site.pk).client_secret == ""


def test_a_key_that_is_not_a_pem_private_key_is_refused(admin_client, site) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.post(f"{SITES}{site.pk}/change/", form(site, new_private_key_pem="not a key"))

    assert response.status_code == 200
    assert "This is not an unencrypted PEM private key." in response.content.decode()
    assert "not a key" not in response.content.decode()  # the refused value is not echoed back either


def test_our_signing_keys_are_listed_read_only_without_the_private_key(admin_client) -> None:  # type: ignore[no-untyped-def]
    from healthcommerce.ehr.keys import signing_key_create

    key = signing_key_create(site=None, alg="ES384", actor="test")
    listing = admin_client.get("/admin/ehr/appsigningkey/")
    page = admin_client.get(f"/admin/ehr/appsigningkey/{key.pk}/change/")

    assert key.kid in listing.content.decode()
    body = html.unescape(page.content.decode())
    assert page.status_code == 200 and key.kid in body and '"crv": "P-384"' in body
    assert '"d"' not in body and "private_jwk" not in body
    assert admin_client.get("/admin/ehr/appsigningkey/add/").status_code == 403


def test_lists_are_edited_one_item_per_line_and_quirks_as_checkboxes(admin_client, site) -> None:  # type: ignore[no-untyped-def]
    site.frame_origins = ["https://epic.harbor.example"]
    site.quirks = {"authorize_post": True}
    site.save()
    page = html.unescape(admin_client.get(f"{SITES}{site.pk}/change/").content.decode())
    assert ">\nhttps://epic.harbor.example</textarea>" in page and '["https://epic.harbor.example"]' not in page
    assert 'type="checkbox" name="quirks" value="authorize_post"' in page
    assert 'name="quirks" value="epic_client_id_header"' in page

    response = admin_client.post(
        f"{SITES}{site.pk}/change/",
        form(
            site,
            frame_origins="https://epic.harbor.example\n\n  https://mychart.harbor.example  \n",
            cds_issuers="https://ehr.harbor.example/fhir",
            cds_jku_allowlist="https://ehr.harbor.example/jwks\nhttps://ehr.harbor.example/jwks",
            quirks="epic_client_id_header",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    saved = EHRSite.objects.get(pk=site.pk)
    assert saved.frame_origins == ["https://epic.harbor.example", "https://mychart.harbor.example"]
    cds = CdsHooksSite.of(saved)
    assert cds.cds_issuers == ["https://ehr.harbor.example/fhir"]
    assert cds.cds_jku_allowlist == ["https://ehr.harbor.example/jwks"]
    assert saved.quirks == {"epic_client_id_header": True}


def test_a_bad_line_is_refused_by_its_number_and_text(admin_client, site) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.post(
        f"{SITES}{site.pk}/change/",
        form(
            site,
            frame_origins="https://epic.harbor.example\nhttps://epic.harbor.example/path",
            cds_jku_allowlist="http://ehr.harbor.example/jwks",
        ),
    )
    assert response.status_code == 200
    body = html.unescape(response.content.decode())
    assert "Line 2: 'https://epic.harbor.example/path' must be an origin" in body
    assert "Line 1: 'http://ehr.harbor.example/jwks' must be https (http only on localhost)" in body
    assert EHRSite.objects.get(pk=site.pk).frame_origins == []


def test_unknown_quirks_stay_as_pretty_printed_json_and_bad_json_says_where(admin_client, site) -> None:  # type: ignore[no-untyped-def]
    site.quirks = {"authorize_post": True, "legacy_flag": {"level": 2}}
    site.save()
    page = html.unescape(admin_client.get(f"{SITES}{site.pk}/change/").content.decode())
    assert '{\n  "legacy_flag": {\n    "level": 2\n  }\n}</textarea>' in page
    kept = admin_client.post(
        f"{SITES}{site.pk}/change/",
        form(site, quirks="authorize_post", other_quirks='{"legacy_flag": {"level": 2}}'),
    )
    assert kept.status_code == 302
    assert EHRSite.objects.get(pk=site.pk).quirks == {"authorize_post": True, "legacy_flag": {"level": 2}}
    bad = admin_client.post(f"{SITES}{site.pk}/change/", form(site, other_quirks='{"legacy_flag": }'))
    assert bad.status_code == 200
    assert "Not valid JSON (Expecting value at line 1, column 17)" in html.unescape(bad.content.decode())
    listed = admin_client.post(f"{SITES}{site.pk}/change/", form(site, other_quirks="[1]"))
    assert "Write a JSON object" in html.unescape(listed.content.decode())


def test_the_site_record_round_trips_what_the_admin_saved(admin_client, site) -> None:  # type: ignore[no-untyped-def]
    from healthcommerce.golive.siterecord import site_record_export

    admin_client.post(
        f"{SITES}{site.pk}/change/",
        form(site, frame_origins="https://epic.harbor.example", quirks="authorize_post"),
    )
    record = site_record_export(site=EHRSite.objects.get(pk=site.pk))
    assert record["frame_origins"] == ["https://epic.harbor.example"]
    assert record["quirks"] == {"authorize_post": True}


def test_scopes_are_edited_one_per_line_and_stored_space_separated(admin_client, site) -> None:  # type: ignore[no-untyped-def]
    page = html.unescape(admin_client.get(f"{SITES}{site.pk}/change/").content.decode())
    assert ">\nlaunch\nopenid\n" in page
    scopes = "launch\nopenid fhirUser\n\npatient/Patient.rs"
    response = admin_client.post(f"{SITES}{site.pk}/change/", form(site, scopes=scopes))
    assert response.status_code == 302
    assert EHRSite.objects.get(pk=site.pk).scopes == "launch openid fhirUser patient/Patient.rs"
    bad = admin_client.post(f"{SITES}{site.pk}/change/", form(site, scopes="launch\npatient/Patient.rs,openid"))
    assert "Line 2: 'patient/Patient.rs,openid' is not a scope" in html.unescape(bad.content.decode())


def test_the_site_page_groups_each_stages_settings_under_its_title_with_readable_labels(admin_client, site) -> None:  # type: ignore[no-untyped-def]
    page = html.unescape(admin_client.get(f"{SITES}{site.pk}/change/").content.decode())

    for title in ("CDS Hooks", "Orders", "Fulfillment", "Purchase links"):
        assert re.search(r'class="inline-heading">\s*' + re.escape(title) + r"\s*</h2>", page), title
    for label in ("CDS Hooks enabled", "CDS Hooks JKU allowlist", "EHR write-back", "Ship-to re-read", "SMS enabled"):
        assert re.search(">" + re.escape(label) + ":?</label>", page), label
    assert page.index("Ship-to re-read") > page.index("Backend scopes")  # after the site's own fields
