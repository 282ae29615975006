from django.urls import path

from healthcommerce.fulfillment.views import status_webhook

app_name = "fulfillment"
urlpatterns = [
    path("<slug:backend>/", status_webhook, name="status_webhook"),
]
