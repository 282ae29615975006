"""``/metrics`` (Prometheus text format) and the per-site integration dashboard in the admin (staff only)."""

import hmac
import ipaddress
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from healthcommerce.core.clientip import client_ip
from healthcommerce.monitoring import charts
from healthcommerce.monitoring.exposition import metrics_text
from healthcommerce.monitoring.models import Alert
from healthcommerce.monitoring.selectors import alerts_live, site_series, sites_seen


def _metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    offered = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    networks = [ipaddress.ip_network(n, strict=False) for n in settings.METRICS_ALLOWED_NETWORKS]
    return address.is_loopback or any(address in network for network in networks)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Answer the Prometheus text exposition (``exposition.metrics_text``) to loopback, ``METRICS_ALLOWED_NETWORKS``
    or ``Authorization: Bearer <METRICS_TOKEN>``; 404 to anyone else. Labels are site names, endpoint kinds and
    outcome classes only."""
    if not _metrics_allowed(request):
        raise Http404()
    body, content_type = metrics_text()
    return HttpResponse(body, content_type=content_type)


def _dashboard(request: HttpRequest) -> HttpResponse:
    """The last 24 hours of one site (``?site=<label>``) as inline SVG charts, or the list of sites; the open
    alerts on both (docs/reliability.md "Integration health")."""
    now = timezone.now()
    sites = sites_seen(since=now - timedelta(hours=24))
    site = request.GET.get("site", "")
    live = list(alerts_live().filter(status=Alert.Status.OPEN))
    context: dict[str, Any] = admin.site.each_context(request) | {
        "title": "Integration health" + (f": {site}" if site else ""),
        "sites": sites,
        "site": site,
        "open_alerts": [a for a in live if not site or a.site == site],
        "recent_alerts": Alert.objects.filter(status=Alert.Status.RESOLVED, **({"site": site} if site else {}))[:20],
    }
    if site:
        started = time.monotonic()
        series = site_series(site=site, until=now)
        context |= {
            "calls_chart": charts.bars("Calls per 30 minutes", {"calls": series.calls}),
            "errors_chart": charts.bars("Errors per 30 minutes by class", series.errors),
            "fhir_chart": charts.line("FHIR mean latency", series.fhir_ms, unit=" ms"),
            "commerce_chart": charts.line("Commerce mean latency", series.commerce_ms, unit=" ms"),
            "ack_chart": charts.line("Sign to acknowledgement, mean", series.sign_to_ack_s, unit=" s"),
            "by_endpoint": series.by_endpoint,
            "outcomes": sorted({o for counts in series.by_endpoint.values() for o in counts}),
            "first": series.starts[0] if series.starts else now,
            "query_ms": round((time.monotonic() - started) * 1000),
        }
    return render(request, "monitoring/dashboard.html", context)


# As every admin page: staff whose session passed the second factor (core/adminsite.py), not staff status alone.
dashboard = never_cache(require_GET(admin.site.admin_view(_dashboard)))
