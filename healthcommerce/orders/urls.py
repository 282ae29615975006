from django.urls import path

from healthcommerce.orders import views

app_name = "orders"
urlpatterns = [
    path("<uuid:launch_id>/", views.launch_home, name="launch"),
    path("<uuid:launch_id>/orders/<uuid:order_id>/", views.order_page, name="order"),
]
