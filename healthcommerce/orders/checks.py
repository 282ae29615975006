"""System checks of the order's field table (``orders.fields.FIELDS``) against the ``Order`` model, run by
``manage.py check`` and at every start (Django's system check framework).

``orders.E001``: a row names a column ``Order`` does not have. ``orders.E002``: a ``Phi.ENCRYPTED`` row's column is
not an encrypted field (``core/encryption.py`` ``Encrypted*Field``): the PHI would be stored in plain text.
``orders.E003``: an encrypted ``Order`` column has no ``Phi.ENCRYPTED`` row: the purge would keep it and support
would see it. Source: docs/style.md 15; ADR 0016; HIPAA 164.312(a)(2)(iv).
"""

from typing import Any

from django.core import checks
from django.core.exceptions import FieldDoesNotExist

from healthcommerce.core.encryption import encrypted_fields
from healthcommerce.orders import fields as order_fields
from healthcommerce.orders.models import Order

HINT = "Each PHI column of Order is an Encrypted*Field and has one row with phi=Phi.ENCRYPTED in orders/fields.py."


def order_fields_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Return an ``Error`` for each row without a column, each PHI row on a plain column and each encrypted column
    without a PHI row; ``[]`` when the table and the model agree."""
    errors: list[checks.CheckMessage] = []
    for row in order_fields.FIELDS:
        try:
            Order._meta.get_field(row.name)
        except FieldDoesNotExist:
            errors.append(checks.Error(f"orders.fields row {row.name!r} names no Order column.", id="orders.E001"))
    encrypted = {f.name for f in dict(encrypted_fields()).get(Order, [])}
    phi = set(order_fields.phi_columns(order_fields.Phi.ENCRYPTED))
    for name in sorted(phi - encrypted):
        message = f"Order.{name} is PHI in orders/fields.py but not an encrypted field: it is stored in plain text."
        errors.append(checks.Error(message, hint=HINT, obj=Order, id="orders.E002"))
    for name in sorted(encrypted - phi):
        message = f"Order.{name} is encrypted but has no PHI row in orders/fields.py: the purge keeps it."
        errors.append(checks.Error(message, hint=HINT, obj=Order, id="orders.E003"))
    return errors
