"""The local orders' admin page moved with the model (``/admin/fulfillment/localcommerceorder/...`` ->
``/admin/commerce_local/localcommerceorder/...``); the old addresses redirect, so bookmarks and runbooks work."""

from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.urls import re_path

NEW_PREFIX = "/admin/commerce_local/localcommerceorder/"


def admin_moved(request: HttpRequest, rest: str) -> HttpResponsePermanentRedirect:
    """Redirect (301) an old admin address to the same page under ``NEW_PREFIX``, query string kept."""
    query = request.META.get("QUERY_STRING", "")
    return HttpResponsePermanentRedirect(f"{NEW_PREFIX}{rest}" + (f"?{query}" if query else ""))


urlpatterns = [re_path(r"^(?P<rest>.*)$", admin_moved, name="local_admin_moved")]
