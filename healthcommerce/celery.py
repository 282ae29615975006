"""The Celery application; configuration comes from Django settings prefixed ``CELERY_``."""

import os

from celery import Celery
from celery.signals import task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcommerce.settings")

app = Celery("healthcommerce")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _keep_worker_connections(**_: object) -> None:
    """In each pool process, keep the database connection between tasks for ``WORKER_CONN_MAX_AGE`` seconds
    instead of ``CONN_MAX_AGE`` (the web's; 0 by default: one connection per task).

    Celery closes a connection after each task once it is older than its ``CONN_MAX_AGE``; a reused one is
    checked before each task (``CONN_HEALTH_CHECKS``, ``_close_stale_connections``). See docs/reliability.md
    "Database connections".
    """
    from django.conf import settings
    from django.db import connections

    for alias in connections:
        connections.settings[alias]["CONN_MAX_AGE"] = settings.WORKER_CONN_MAX_AGE


@task_prerun.connect
def _close_stale_connections(**_: object) -> None:
    """Drop database connections that died (e.g. a PostgreSQL restart) before each task.

    See docs/reliability.md "Database connections".
    """
    from django.db import close_old_connections

    close_old_connections()
