"""``manage.py hl7_listen [--host HOST] [--port PORT]``: the HL7 v2 MLLP listener (the Procfile's ``hl7`` line;
``intake/mllp.py``). Prints one line once it listens (``hl7_listen: listening on 127.0.0.1:2575 (TLS, client
certificate required)``; with ``--port 0`` the line gives the port it got), runs until SIGTERM or SIGINT, then
finishes the messages being answered and exits 0.

TLS from ``HL7_TLS_CERT``, ``HL7_TLS_KEY`` and ``HL7_TLS_CLIENT_CA``; without them it runs plain TCP only in
embedded mode on a loopback address. In production with none of the three set, HL7 v2 intake is off: it prints
one line saying so and waits for SIGTERM without listening (so ``make serve`` runs where no feed is wanted); with
only some set it refuses to start (exit 78, EX_CONFIG) naming what is missing.
"""

import asyncio
import signal
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from healthcommerce.core import metrics
from healthcommerce.core.deploy import EX_CONFIG
from healthcommerce.intake.checks import tls_configured
from healthcommerce.intake.mllp import Hl7Listener, listen, listener_ssl_context


class Command(BaseCommand):
    help = "Listen for HL7 v2 messages over MLLP (TLS with client certificates; plain TCP on loopback in the demo)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default=None, help="Address to bind (default HL7_LISTEN_HOST, 127.0.0.1).")
        parser.add_argument("--port", type=int, default=None, help="Port (default HL7_LISTEN_PORT, 2575; 0: any).")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION and not tls_configured():
            self._off()
            return
        host = options["host"] or settings.HL7_LISTEN_HOST
        port = settings.HL7_LISTEN_PORT if options["port"] is None else options["port"]
        try:
            context = listener_ssl_context(host)
        except (ImproperlyConfigured, OSError) as exc:
            raise CommandError(f"hl7_listen refuses to start: {exc}", returncode=EX_CONFIG) from None
        mode = "TLS, client certificate required" if context else "plain TCP, embedded mode"
        # Keep each worker thread's database connection between messages, as a Celery worker does
        # (WORKER_CONN_MAX_AGE; healthcommerce/celery.py): a connection per message would cost the ACK latency.
        for alias in connections:
            connections.settings[alias]["CONN_MAX_AGE"] = settings.WORKER_CONN_MAX_AGE

        def ready(listener: Hl7Listener) -> None:
            self.stdout.write(f"hl7_listen: listening on {host}:{listener.port} ({mode})")
            self.stdout.flush()

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            await listen(host=host, port=port, ssl_context=context, stop=stop, ready=ready)

        try:
            asyncio.run(main())
        except OSError as exc:  # the port is taken, the address is not ours
            raise CommandError(f"hl7_listen cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        metrics.flush(force=True)  # the last integration-health counts
        self.stdout.write("hl7_listen: stopped")

    def _off(self) -> None:
        """Say that HL7 v2 intake is off, then wait for SIGTERM or SIGINT (exit 0) without listening."""
        self.stdout.write(
            "hl7_listen: HL7 v2 intake is off: set HL7_TLS_CERT, HL7_TLS_KEY and HL7_TLS_CLIENT_CA to listen "
            "(docs/deploy.md)"
        )
        self.stdout.flush()

        async def wait() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()

        asyncio.run(wait())
        self.stdout.write("hl7_listen: stopped")
