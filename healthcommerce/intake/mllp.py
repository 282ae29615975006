"""MLLP: HL7 v2 over TCP (HL7 v2.5.1 Appendix C "Lower Layer Protocols", MLLP release 2), our own small asyncio code.

A frame is ``0x0B`` + message + ``0x1C 0x0D``. The server (``Hl7Listener``):
- discards bytes before ``0x0B`` (junk), and a frame that a new ``0x0B`` interrupts, or that the peer cuts off by
  closing: neither creates anything;
- refuses a frame over ``MAX_FRAME`` (1 MiB): discards it to its end, answers AR when the start shows an MSH-10,
  else closes;
- reads one message at a time per connection and answers it before reading the next (order kept), any number of
  connections at once; the database work runs on a pool of ``HL7_WORKER_THREADS`` threads (``asyncio.to_thread``
  style), each closing its database connection as a request would (``close_old_connections``) and on shutdown;
- closes a connection silent for ``HL7_IDLE_TIMEOUT`` seconds;
- speaks TLS with a required client certificate (``ssl.CERT_REQUIRED``, CA ``HL7_TLS_CLIENT_CA``) and passes the
  certificate's SHA-256 to ``intake_hl7_answer``; plain TCP only in embedded mode on a loopback address.

python-hl7's own ``hl7.mllp`` server has no frame size limit and no TLS client certificate hand-over, hence this.
The client, ``mllp_send``, is ``intake/mllpclient.py`` (status back, tests).
"""

import asyncio
import concurrent.futures
import contextlib
import hashlib
import ipaddress
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, close_old_connections, connections

from healthcommerce.audit.services import audit_seal, audit_seal_after_commit
from healthcommerce.intake.hl7msg import ack_build, header_read, hl7_decode

logger = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"
MAX_FRAME = 1024 * 1024  # bytes between the start and end blocks (issue 20)
_READ = 64 * 1024


def frame(message: bytes) -> bytes:
    """Return ``message`` wrapped in MLLP's start and end blocks."""
    return START + message + END


@dataclass
class Frame:
    """One frame read: ``payload`` (the message's bytes), ``oversize`` (more than ``MAX_FRAME`` bytes: ``payload``
    holds only its start)."""

    payload: bytes
    oversize: bool = False


class FrameReader:
    """Read MLLP frames from an ``asyncio.StreamReader``; ``idle`` seconds of silence raise ``TimeoutError``."""

    def __init__(self, reader: asyncio.StreamReader, *, idle: float, limit: int = MAX_FRAME) -> None:
        self.reader, self.idle, self.limit = reader, idle, limit
        self.buffer = bytearray()

    async def _fill(self) -> bool:
        """Read more into the buffer; False at end of stream (or a reset connection)."""
        try:
            chunk = await asyncio.wait_for(self.reader.read(_READ), self.idle)
        except (ConnectionError, ssl.SSLError):
            return False
        self.buffer += chunk
        return bool(chunk)

    async def next(self) -> Frame | None:
        """Return the next complete frame; None at the end of the stream (a cut frame is dropped)."""
        while True:
            start = self.buffer.find(START)
            if start >= 0:
                del self.buffer[: start + 1]
                break
            self.buffer.clear()  # junk before a start block
            if not await self._fill():
                return None
        while True:
            end = self.buffer.find(END)
            restart = self.buffer.find(START, 0, end if end >= 0 else len(self.buffer))
            if restart >= 0:  # a new frame began before this one ended: this one was cut
                del self.buffer[: restart + 1]
                continue
            if end >= 0:
                if end > self.limit:
                    head = bytes(self.buffer[:4096])
                    del self.buffer[: end + len(END)]
                    return Frame(head, oversize=True)
                payload = bytes(self.buffer[:end])
                del self.buffer[: end + len(END)]
                return Frame(payload)
            if len(self.buffer) > self.limit + 1:
                return await self._discard()
            if not await self._fill():
                return None

    async def _discard(self) -> Frame | None:
        """Skip an oversized frame to its end block; return its start (``oversize``), None if the stream ends."""
        head = bytes(self.buffer[:4096])
        while True:
            end = self.buffer.find(END)
            if end >= 0:
                del self.buffer[: end + len(END)]
                return Frame(head, oversize=True)
            del self.buffer[:-1]  # keep a last 0x1C whose 0x0D may come next
            if not await self._fill():
                return None


def oversize_answer(head: bytes) -> bytes:
    """Return the AR for an oversized frame whose start ``head`` shows an MSH with MSH-10, ``b""`` otherwise."""
    try:
        text = hl7_decode(head.split(b"\r", 1)[0] + b"\r")
        header = header_read(text)
    except ValueError:
        return b""
    ack = ack_build(
        header=header,
        code="CR" if header.enhanced else "AR",
        text=f"The message is larger than {MAX_FRAME} bytes.",
        error=("207", "Application internal error"),
    )
    return ack.encode()


def certificate_sha256(transport: Any) -> str:
    """Return the SHA-256 (hex) of the TLS peer's certificate on ``transport``, ``""`` without TLS."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return ""
    der = ssl_object.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest() if der else ""


def server_ssl_context(*, cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """Return the listener's TLS context: our certificate ``cert`` and ``key`` (PEM files), TLS 1.2 or later, and a
    client certificate required, verified against the CA bundle ``client_ca`` (PEM)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=client_ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def listener_ssl_context(host: str) -> ssl.SSLContext | None:
    """Return the TLS context from ``HL7_TLS_CERT``, ``HL7_TLS_KEY`` and ``HL7_TLS_CLIENT_CA``; None (plain TCP)
    when none is set, which only embedded mode on a loopback ``host`` allows. Raises ``ImproperlyConfigured``
    naming what is missing otherwise."""
    values = (settings.HL7_TLS_CERT, settings.HL7_TLS_KEY, settings.HL7_TLS_CLIENT_CA)
    if all(values):
        return server_ssl_context(cert=values[0], key=values[1], client_ca=values[2])
    if any(values):
        raise ImproperlyConfigured("Set all of HL7_TLS_CERT, HL7_TLS_KEY and HL7_TLS_CLIENT_CA, or none.")
    if getattr(settings, "PRODUCTION", True) or not _loopback(host):
        raise ImproperlyConfigured(
            "The HL7 listener needs TLS with client certificates (HL7_TLS_CERT, HL7_TLS_KEY, HL7_TLS_CLIENT_CA); "
            "plain TCP is allowed only in embedded mode on a loopback address."
        )
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _thread_close_connections() -> None:
    connections.close_all()


class Hl7Listener:
    """The MLLP server on ``host``:``port`` (0: any free port; ``port`` holds the bound one once started), TLS when
    ``ssl_context`` is given. ``answer(raw, peer_certificate_sha256=..., peer=...)`` returns an
    ``intake.services.Answer`` and runs in a worker thread (default ``intake_hl7_answer``)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        answer: Callable[..., Any] | None = None,
        threads: int | None = None,
        idle: float | None = None,
    ) -> None:
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.threads = threads or settings.HL7_WORKER_THREADS
        self.idle = idle if idle is not None else settings.HL7_IDLE_TIMEOUT
        self._answer = answer
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="hl7")
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._reading: set[asyncio.Task[Any]] = set()  # connections waiting for their next frame
        self._stopping = False
        # Fault tests only (tests/faults, make test-faults): milliseconds between the commit and the answer, so a
        # SIGKILL can land there. Ignored in production.
        delay = 0.0 if getattr(settings, "PRODUCTION", True) else float(os.environ.get("HL7_FAULT_ACK_DELAY_MS") or 0)
        self.ack_delay = delay / 1000

    def _work(self, raw: bytes, fingerprint: str, peer: str) -> Any:
        """Answer one message in a worker thread, with the database connection handled as a request's."""
        from healthcommerce.core import metrics
        from healthcommerce.intake.services import intake_hl7_answer

        close_old_connections()
        try:
            answer = (self._answer or intake_hl7_answer)(raw, peer_certificate_sha256=fingerprint, peer=peer)
            if self.ack_delay:
                time.sleep(self.ack_delay)
            return answer
        finally:
            close_old_connections()
            metrics.flush()

    async def start(self) -> None:
        """Bind and start accepting; ``self.port`` is then the bound port."""
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, ssl=self.ssl_context, limit=_READ, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let each connection finish the message it is answering (up to ``grace`` seconds), close
        the rest, then close every worker thread's database connection."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in list(self._reading):
            task.cancel()
        if self._connections:
            _, pending = await asyncio.wait(set(self._connections), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self._close_thread_connections)

    def _close_thread_connections(self) -> None:
        """Run ``connections.close_all`` once on every worker thread (each task waits at a barrier until all run)."""
        barrier = threading.Barrier(self.threads)

        def close() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            _thread_close_connections()

        for future in [self._pool.submit(close) for _ in range(self.threads)]:
            with contextlib.suppress(Exception):
                future.result(timeout=10)
        self._pool.shutdown(wait=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        address = writer.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else ""
        try:
            await self._serve(FrameReader(reader, idle=self.idle), writer, peer)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the connection's boundary: one peer's failure never stops the listener
            logger.error("hl7 listener: connection from %s failed (%s)", peer, type(exc).__name__)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _serve(self, frames: FrameReader, writer: asyncio.StreamWriter, peer: str) -> None:
        """Answer the connection's frames one at a time until it ends, idles out or must be closed."""
        fingerprint = certificate_sha256(writer.transport)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        while not self._stopping:
            self._reading.add(task)  # type: ignore[arg-type]
            try:
                got = await frames.next()
            finally:
                self._reading.discard(task)  # type: ignore[arg-type]
            if got is None:
                return
            if got.oversize:
                logger.warning("hl7 listener: a frame over %d bytes from %s was discarded", MAX_FRAME, peer)
                ack = oversize_answer(got.payload)
                close = not ack
            else:
                # Not cancelled on shutdown (only waiting connections are): the answer of a stored message is sent.
                result = await loop.run_in_executor(self._pool, self._work, got.payload, fingerprint, peer)
                ack, close = result.ack, result.close
            if ack:
                writer.write(frame(ack))
                await writer.drain()
            if close:
                return


async def listen(
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    stop: asyncio.Event,
    ready: Callable[[Hl7Listener], None] | None = None,
) -> None:
    """Run an ``Hl7Listener`` until ``stop`` is set; call ``ready(listener)`` once it listens.

    The audit rows of the messages are chained by a timer (``audit_seal`` every ``AUDIT_SEAL_INTERVAL`` seconds, on a
    thread of its own, and once more on the way out) instead of after each message's commit: one sealer for the
    process, off the ACK's path (ADR 0015, ADR 0024)."""
    listener = Hl7Listener(host=host, port=port, ssl_context=ssl_context)
    await listener.start()
    if ready is not None:
        ready(listener)
    audit_seal_after_commit(False)
    try:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.AUDIT_SEAL_INTERVAL)
            await asyncio.to_thread(_seal)
    finally:
        await listener.stop()
        await asyncio.to_thread(_seal)
        audit_seal_after_commit(True)


def _seal() -> None:
    """Chain the committed audit rows (``audit_seal``) on this thread, then close its database connection; a
    database error is logged and left to the next run (beat seals within a minute too)."""
    try:
        audit_seal()
    except DatabaseError as exc:
        logger.warning("hl7 listener: audit seal failed: %s", type(exc).__name__)
    finally:
        connections.close_all()
