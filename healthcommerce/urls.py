"""Root URLs. The sandbox EHR is mounted only when ``SANDBOX_ENABLED`` is true."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from healthcommerce.ehr.views import jwks
from healthcommerce.monitoring.views import metrics
from healthcommerce.outbox.views import readyz
from healthcommerce.purchaselinks.stripe_webhooks import stripe_webhook

urlpatterns = [
    # Before the admin's catch-all: the per-site integration dashboard (staff only).
    path("admin/monitoring/", include("healthcommerce.monitoring.urls")),
    path("admin/golive/", include("healthcommerce.golive.urls")),
    path("admin/fulfillment/localcommerceorder/", include("healthcommerce.fulfillment.backends.local.urls")),
    path("admin/", admin.site.urls),
    path("smart/", include("healthcommerce.ehr.urls")),
    path("o/", include("healthcommerce.orders.urls")),
    path("p/", include("healthcommerce.purchaselinks.urls")),
    # Notifications an EHR posts (FHIR Subscriptions Backport IG), authenticated per site by a bearer token.
    path("intake/", include("healthcommerce.intake.urls")),
    # Before the commerce backends' /webhooks/<backend>/, which would take "stripe" for a backend's name.
    path("webhooks/stripe/", stripe_webhook, name="stripe_webhook"),
    path("webhooks/", include("healthcommerce.fulfillment.urls")),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    # Our public signing keys (SMART client-confidential-asymmetric JWKS URL); public, no PHI.
    path(".well-known/jwks.json", jwks, name="jwks"),
    path("", include("healthcommerce.cdshooks.urls")),
    path("", include("healthcommerce.core.urls")),
]
if settings.SANDBOX_ENABLED:
    urlpatterns.insert(0, path("sandbox/", include("healthcommerce.sandbox.urls")))

handler400 = "healthcommerce.core.views.bad_request"
handler403 = "healthcommerce.core.views.permission_denied"
handler404 = "healthcommerce.core.views.page_not_found"
handler500 = "healthcommerce.core.views.server_error"
