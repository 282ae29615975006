from django.urls import path

from healthcommerce.ehr import views

app_name = "ehr"
urlpatterns = [
    path("launch", views.launch, name="launch"),
    path("callback", views.callback, name="callback"),
    path("style/<uuid:launch_id>.css", views.launch_style, name="style"),
]
