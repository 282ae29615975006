"""Base model for everything a URL or another system sees (docs/style.md 11)."""

import uuid

from django.db import models


class BaseModel(models.Model):
    """Abstract model with a UUID primary key and aware created/updated timestamps."""

    id = models.UUIDField(verbose_name="ID", primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
