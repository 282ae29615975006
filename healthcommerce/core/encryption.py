"""Encryption at rest: the encrypted model fields, key rotation and the migration that encrypts a column in place.

The fields are django-fernet-fields-v2's (``fernet_fields``), keyed by ``settings.FIELD_ENCRYPTION_KEYS`` (Fernet
keys, newest first) instead of the library's ``FERNET_KEYS``/``SECRET_KEY`` derivation: a ``MultiFernet`` encrypts
with the first key and decrypts with any (cryptography's Fernet spec: AES-128-CBC with HMAC-SHA256, a timestamp
and a random IV per value). Values are stored as ``bytea``/BLOB; a value no key decrypts raises ``InvalidToken``
(never shown as ciphertext). Encrypted columns support no lookups but ``isnull``: a ``filter()`` on one raises
``FieldError``, so a search that needs one must use another column (docs/adr/0016-encryption-at-rest.md).
"""

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps as global_apps
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.signals import setting_changed
from django.db import connection, migrations, models, transaction
from django.dispatch import receiver
from django.forms import JSONField as JSONFormField
from django.utils.functional import cached_property
from fernet_fields import fields as fernet

logger = logging.getLogger(__name__)

_CACHED = ("keys", "fernet_keys", "fernet")


class _SettingsKeys:
    """Take the keys from ``FIELD_ENCRYPTION_KEYS`` as they are (Fernet keys; no HKDF over ``SECRET_KEY``)."""

    @cached_property
    def keys(self) -> list[str]:
        return list(settings.FIELD_ENCRYPTION_KEYS)

    @cached_property
    def fernet_keys(self) -> list[str]:
        return self.keys


class EncryptedCharField(_SettingsKeys, fernet.EncryptedCharField, models.CharField):
    """A ``CharField`` stored encrypted; ``max_length`` limits the plaintext (form validation only)."""


class EncryptedTextField(_SettingsKeys, fernet.EncryptedTextField, models.TextField):
    """A ``TextField`` stored encrypted."""


class EncryptedEmailField(_SettingsKeys, fernet.EncryptedEmailField, models.EmailField):
    """An ``EmailField`` stored encrypted."""


class EncryptedDateField(_SettingsKeys, fernet.EncryptedDateField, models.DateField):
    """A ``DateField`` stored encrypted (its ISO text)."""


class EncryptedJSONField(_SettingsKeys, fernet.EncryptedTextField, models.TextField):
    """A JSON value (dicts, lists, strings, numbers, booleans, null) stored encrypted as one JSON document.

    The whole document is encrypted, keys included, and types survive (unlike per-leaf schemes that turn every
    leaf into a string). No JSON lookups (``payload__key``): the database cannot see inside.
    """

    _pyi_private_set_type: Any  # django-stubs: the attribute's Python type (a TextField's would be str)
    _pyi_private_get_type: Any

    def get_prep_value(self, value: Any) -> Any:
        return None if value is None else json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":"))

    def from_db_value(self, value: Any, expression: Any, connection: Any, *args: Any) -> Any:
        text = super().from_db_value(value, expression, connection, *args)
        return None if text is None else json.loads(text)

    def to_python(self, value: Any) -> Any:
        return value

    def formfield(self, **kwargs: Any) -> Any:
        return super().formfield(**{"form_class": JSONFormField, "encoder": DjangoJSONEncoder, **kwargs})


def encrypted_fields() -> list[tuple[type[models.Model], list[fernet.EncryptedField]]]:
    """Return every installed model with encrypted fields, and those fields (concrete ones, in model order).
    A proxy model (``orders.HeldOrder``) is left out: its rows and columns are its concrete model's."""
    found = []
    for model in global_apps.get_models():
        if model._meta.proxy:
            continue
        fields = [f for f in model._meta.concrete_fields if isinstance(f, fernet.EncryptedField)]
        if fields:
            found.append((model, fields))
    return found


@receiver(setting_changed)
def _keys_changed(*, setting: str, **kwargs: Any) -> None:
    """Forget the keys each field cached when ``FIELD_ENCRYPTION_KEYS`` changes (tests' ``override_settings``)."""
    if setting == "FIELD_ENCRYPTION_KEYS":
        for _, fields in encrypted_fields():
            for f in fields:
                for name in _CACHED:
                    f.__dict__.pop(name, None)


@dataclass
class RotateReport:
    """What ``encryption_rotate`` did per column (``"app_label.Model.field"``): ``rotated`` values re-encrypted
    with the first key, ``current`` already under it, ``failed`` that no key decrypts (left unchanged)."""

    rotated: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)


def encryption_rotate(*, batch_size: int = 500, progress: Callable[[str], None] | None = None) -> RotateReport:
    """Re-encrypt every encrypted column's values that are not under ``FIELD_ENCRYPTION_KEYS[0]`` with it.

    Reads the raw tokens in primary-key order, ``batch_size`` rows per transaction; a value the first key already
    decrypts is left alone, any other is rotated (``MultiFernet.rotate``, which keeps its timestamp) and written
    back with ``UPDATE ... WHERE pk = %s AND col = <the token read>``, so a value the app changed meanwhile (it
    writes with the first key) is never overwritten. Idempotent: a second run rotates nothing. A value no key
    decrypts is counted in ``failed`` and left as it is. Not one transaction on purpose: a large table is
    rotated in batches while the app runs. Source: cryptography ``MultiFernet.rotate``; docs/deploy.md
    "Encryption keys".
    """
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    primary = Fernet(keys[0])
    every = MultiFernet([Fernet(k) for k in keys])
    report = RotateReport()
    quote = connection.ops.quote_name
    for model, fields in encrypted_fields():
        table, pk = quote(model._meta.db_table), quote(str(model._meta.pk.column))
        for f in fields:
            label = f"{model._meta.label}.{f.name}"
            column = quote(str(f.column))
            counts = {"rotated": 0, "current": 0, "failed": 0}
            for rows in _batches(table, pk, column, batch_size):
                with transaction.atomic():
                    for row_pk, raw in rows:
                        counts[_rotate_one(table, pk, column, row_pk, bytes(raw), primary, every)] += 1
            report.rotated[label], report.current[label], report.failed[label] = (
                counts["rotated"],
                counts["current"],
                counts["failed"],
            )
            if progress:
                progress(
                    f"{label}: {counts['rotated']} rotated, {counts['current']} current, {counts['failed']} failed"
                )
    return report


def _batches(table: str, pk: str, column: str, size: int) -> Iterator[list[tuple[Any, Any]]]:
    """Yield ``(pk, raw token)`` rows with a value in ``column``, ``size`` at a time, in primary-key order."""
    last: Any = None
    while True:
        with connection.cursor() as cursor:
            after = f"AND {pk} > %s " if last is not None else ""
            # Quoted names from the model registry, values as parameters.
            sql = f"SELECT {pk}, {column} FROM {table} WHERE {column} IS NOT NULL {after}ORDER BY {pk} LIMIT %s"  # noqa: S608  # nosec B608
            cursor.execute(sql, [last, size] if last is not None else [size])
            rows = cursor.fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _rotate_one(
    table: str, pk: str, column: str, row_pk: Any, token: bytes, primary: Fernet, every: MultiFernet
) -> str:
    """Rotate one value; return ``current``, ``rotated`` or ``failed``."""
    try:
        primary.decrypt(token)
        return "current"
    except InvalidToken:
        pass
    try:
        fresh = every.rotate(token)
    except InvalidToken:
        logger.error("encryption: a value in %s.%s decrypts with no configured key", table, column)
        return "failed"
    with connection.cursor() as cursor:
        binary = connection.Database.Binary  # type: ignore[attr-defined]
        sql = f"UPDATE {table} SET {column} = %s WHERE {pk} = %s AND {column} = %s"  # noqa: S608  # nosec B608
        cursor.execute(sql, [binary(fresh), row_pk, binary(token)])
    return "rotated"


def encrypt_in_place(
    app_label: str, model_name: str, fields: Iterable[tuple[str, models.Field, models.Field]]
) -> list[migrations.operations.base.Operation]:
    """Return the migration operations that encrypt columns of ``app_label.model_name`` keeping their names.

    ``fields`` are ``(name, old plain field, new encrypted field)``. For each: rename the plain column to
    ``<name>_plain`` and make it nullable, add the encrypted column (nullable), copy every row (decrypting on the
    way back when reversed), drop the plain column, then give the encrypted one its final definition. Reversible:
    backwards, the plain columns come back filled and the encrypted ones go.
    """
    fields = list(fields)
    plain = {name: f"{name}_plain" for name, _, _ in fields}
    ops: list[migrations.operations.base.Operation] = []
    for name, old, new in fields:
        ops.append(migrations.RenameField(model_name, name, plain[name]))
        ops.append(migrations.AlterField(model_name, plain[name], _nullable(old)))
        ops.append(migrations.AddField(model_name, name, _nullable(new)))

    def copy(apps: Any, schema_editor: Any, *, source: dict[str, str]) -> None:
        model = apps.get_model(app_label, model_name)
        manager = model._default_manager.using(schema_editor.connection.alias)
        for pk in list(manager.values_list("pk", flat=True)):
            row = manager.filter(pk=pk).values(*source.values()).get()
            manager.filter(pk=pk).update(**{target: row[src] for target, src in source.items()})

    ops.append(
        migrations.RunPython(
            lambda apps, editor: copy(apps, editor, source=plain),
            lambda apps, editor: copy(apps, editor, source={v: k for k, v in plain.items()}),
            elidable=False,
        )
    )
    for name, _, new in fields:
        ops.append(migrations.RemoveField(model_name, plain[name]))
        ops.append(migrations.AlterField(model_name, name, new))
    return ops


def _nullable(f: models.Field) -> models.Field:
    """A copy of ``f`` that allows NULL."""
    _, _, args, kwargs = f.deconstruct()
    return f.__class__(*args, **{**kwargs, "null": True})
