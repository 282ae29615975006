"""``{% switch_return %}``: the page the language switch on this page goes back to (``views.switch_return``)."""

from typing import Any

from django import template

from healthcommerce.purchaselinks.views import switch_return as _switch_return

register = template.Library()


@register.simple_tag(takes_context=True)
def switch_return(context: dict[str, Any]) -> str:
    """Return this page's path when the switch may come back to it, else ``""`` (never ``/p/<token>/``)."""
    request = context.get("request")
    match = getattr(request, "resolver_match", None)
    return _switch_return(match.url_name if match else None)
