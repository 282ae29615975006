"""The translation catalogs in ``locale/`` (ADR 0013): each compiled ``.mo`` (committed: a fresh machine has no
GNU gettext) says exactly what its ``.po`` says, nothing is left untranslated or fuzzy, the placeholders of each
translation are its message's, and every patient template (pages and messages) loads the i18n tags."""

import re
from pathlib import Path

import polib
import pytest
from django.conf import settings

LOCALE = Path(settings.LOCALE_PATHS[0])
CATALOGS = sorted(LOCALE.glob("*/LC_MESSAGES/django.po"))
TEMPLATES = Path(settings.BASE_DIR) / "templates" / "purchaselinks"
PLACEHOLDER = re.compile(r"%\((\w+)\)s|\{(\w+)\}")


def test_every_language_but_english_has_a_catalog() -> None:
    assert [po.parent.parent.name for po in CATALOGS] == [code for code, _ in settings.LANGUAGES if code != "en"]


@pytest.mark.parametrize("po_path", CATALOGS, ids=lambda path: path.parent.parent.name)
def test_the_catalog_is_complete_and_its_mo_is_in_step(po_path: Path) -> None:
    po = polib.pofile(str(po_path))
    assert [e.msgid for e in po.untranslated_entries()] == [], "untranslated: run makemessages and translate"
    assert [e.msgid for e in po.fuzzy_entries()] == [], "fuzzy: check the translation and remove the flag"
    assert not po.metadata_is_fuzzy
    mo_path = po_path.with_suffix(".mo")
    assert mo_path.exists(), "compile it: python manage.py compilemessages"
    mo = polib.mofile(str(mo_path))
    expected = {(e.msgctxt, e.msgid): e.msgstr for e in po.translated_entries()}
    compiled = {(e.msgctxt, e.msgid): e.msgstr for e in mo if e.msgid}
    assert compiled == expected, "the .mo is out of step with the .po: python manage.py compilemessages"


@pytest.mark.parametrize("po_path", CATALOGS, ids=lambda path: path.parent.parent.name)
def test_each_translation_keeps_its_placeholders(po_path: Path) -> None:
    for entry in polib.pofile(str(po_path)).translated_entries():
        assert sorted(PLACEHOLDER.findall(entry.msgstr)) == sorted(PLACEHOLDER.findall(entry.msgid)), entry.msgid


@pytest.mark.parametrize(
    "template", sorted(p for p in TEMPLATES.rglob("*") if p.suffix in (".html", ".txt")), ids=lambda p: p.name
)
def test_every_patient_template_is_translatable(template: Path) -> None:
    text = template.read_text()
    if template.name == "unavailable.html":  # all its text comes from the view, translated there
        return
    assert "{% load i18n" in text or re.search(r"{% load [\w ]*\bi18n\b", text), f"{template.name}: load i18n"
