"""Integration health URLs: the dashboard lives under the admin, ``/metrics`` at the root (healthcommerce/urls.py)."""

from django.urls import path

from healthcommerce.monitoring import views

app_name = "monitoring"
urlpatterns = [path("dashboard/", views.dashboard, name="dashboard")]
