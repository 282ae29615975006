"""The Celery application; configuration comes from Django settings prefixed ``CELERY_``."""

import os
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_process_init

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


@before_task_publish.connect
def _send_request_id(headers: dict[str, Any] | None = None, **_: object) -> None:
    """Carry the current request id into the task's headers (docs/reliability.md "Integration health")."""
    from healthcommerce.core.requestid import TASK_HEADER, request_id

    current = request_id()
    if current and headers is not None:
        headers.setdefault(TASK_HEADER, current)


@task_prerun.connect
def _restore_request_id(task: Any = None, **_: object) -> None:
    """Run the task under the request id it was published with, or a fresh one."""
    from healthcommerce.core.requestid import TASK_HEADER, new_request_id, request_id_set

    request = task.request if task is not None else None
    carried = getattr(request, TASK_HEADER, None) or (getattr(request, "headers", None) or {}).get(TASK_HEADER)
    request_id_set(carried if isinstance(carried, str) and carried else new_request_id())


@task_postrun.connect
def _clear_request_id(**_: object) -> None:
    """Forget the task's request id once it ran, so the next task in this process does not inherit it."""
    from healthcommerce.core.requestid import request_id_set

    request_id_set(None)
