"""The Celery application; configuration comes from Django settings prefixed ``CELERY_``."""

import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcommerce.settings")

app = Celery("healthcommerce")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _close_stale_connections(**_: object) -> None:
    """Drop database connections that died (e.g. a PostgreSQL restart) before each task.

    See docs/reliability.md "Database connections".
    """
    from django.db import close_old_connections

    close_old_connections()
