"""URLconf for the sandbox tests: the sandbox where the root URLconf mounts it, and the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("sandbox/", include("healthcommerce.sandbox.urls")),
]
