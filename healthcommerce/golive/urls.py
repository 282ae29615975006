"""Go-live pages under the admin (staff with two-factor; healthcommerce/urls.py mounts them before the admin)."""

from django.urls import path

from healthcommerce.golive import views

app_name = "golive"
urlpatterns = [path("sites/<uuid:site_id>/readiness/", views.readiness, name="readiness")]
