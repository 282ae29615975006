"""The readiness page (templates/golive/readiness.html): each result keeps its word and is coloured as a badge
(static/admin/healthcommerce.css, loaded on every admin page)."""

from datetime import UTC, datetime

from django.conf import settings
from django.template.loader import render_to_string
from django.test import RequestFactory

from healthcommerce.ehr.models import EHRSite
from healthcommerce.golive.readiness import FAIL, PASS, WARN, Check, ReadinessReport


def test_each_result_is_a_coloured_badge_that_keeps_its_word(db: None) -> None:
    report = ReadinessReport(site_name="Clinic", iss="https://ehr.example/fhir", checked_at=datetime.now(UTC))
    report.checks = [
        Check("discovery", PASS, "ok"),
        Check("tls", WARN, "soon", "renew"),
        Check("jwks", FAIL, "no", "x"),
    ]
    site = EHRSite.objects.create(name="Clinic", iss="https://ehr.example/fhir", client_id="c")
    html = render_to_string("golive/readiness.html", {"report": report, "site": site}, RequestFactory().get("/"))
    css = (settings.BASE_DIR / "static/admin/healthcommerce.css").read_text()
    for status in ("pass", "warn", "fail"):
        assert f'class="readiness-badge readiness-badge-{status}">{status.upper()}</strong>' in html
        assert f".readiness-badge-{status} {{ background:" in css
    assert "admin/healthcommerce.css" in html
