"""A small synchronous MLLP client: send one HL7 v2 message and read its ACK (HL7 v2.5.1 Appendix C "Minimal Lower
Layer Protocol", release 2: ``0x0B`` message ``0x1C 0x0D``), over plain TCP or TLS.

Used by the status messages sent back to a site's interface engine (``orders.hl7status``) and by tests. It has the
signature SPEC-20 gives ``intake.mllp.mllp_send``; one connection per message, closed after the ACK.
"""

import socket
import ssl
import time

START = b"\x0b"
END = b"\x1c\x0d"
# An ACK is a few hundred bytes; a peer that sends more than this without a frame end is not speaking MLLP.
MAX_ACK_BYTES = 1024 * 1024


class MllpError(OSError):
    """The message was not acknowledged: no connection, no answer in time, or an answer that is not an MLLP frame.
    ``kind`` is ``connection``, ``timeout``, ``tls`` or ``frame``; the text names the endpoint, never the message."""

    kind = "connection"


class MllpTimeout(MllpError, TimeoutError):
    """No connection or no complete ACK within the timeout."""

    kind = "timeout"


class MllpConnectionError(MllpError, ConnectionError):
    """The connection was refused, reset or closed before a complete ACK came back."""

    kind = "connection"


class MllpTlsError(MllpError):
    """The TLS handshake failed (certificate not trusted, wrong host name, client certificate refused)."""

    kind = "tls"


class MllpFrameError(MllpError):
    """The answer was not one MLLP frame (no start byte, oversized, or not text)."""

    kind = "frame"


def endpoint_split(endpoint: str) -> tuple[str, int]:
    """Return ``(host, port)`` of ``"host:port"`` (``"[::1]:2575"`` for IPv6). Raises ``ValueError`` for anything
    else."""
    host, sep, port = endpoint.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"An MLLP endpoint is host:port, not {endpoint!r}.")
    return host, int(port)


def _frame(message: str) -> bytes:
    """Return ``message`` (segments separated by CR; LF or CRLF are turned into CR) framed for MLLP, UTF-8."""
    text = message.replace("\r\n", "\r").replace("\n", "\r")
    return START + text.encode("utf-8") + END


def _read_frame(sock: socket.socket, deadline: float, endpoint: str) -> str:
    """Read one frame from ``sock`` before ``deadline`` (``time.monotonic()``); return its text."""
    buffer = b""
    while END not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MllpTimeout(f"No ACK from {endpoint} in time.")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError as exc:
            raise MllpTimeout(f"No ACK from {endpoint} in time.") from exc
        if not chunk:
            raise MllpConnectionError(f"{endpoint} closed the connection without an ACK.")
        buffer += chunk
        if len(buffer) > MAX_ACK_BYTES:
            raise MllpFrameError(f"The answer from {endpoint} is over {MAX_ACK_BYTES} bytes without a frame end.")
    body = buffer[: buffer.index(END)]
    if not body.startswith(START):
        raise MllpFrameError(f"The answer from {endpoint} does not start with the MLLP start byte.")
    try:
        return body[1:].decode("utf-8")
    except UnicodeDecodeError:
        return body[1:].decode("latin-1")


def mllp_send(endpoint: str, message: str, *, timeout: float, ssl_context: ssl.SSLContext | None = None) -> str:
    """Send ``message`` (HL7 v2 ER7 text) to ``endpoint`` (``"host:port"``) in one MLLP frame and return the ACK's
    text (segments separated by CR), read within ``timeout`` seconds in all (connect, TLS, send and answer).

    With ``ssl_context`` the connection is TLS, the server's name checked against the endpoint's host as the
    context says (our client certificate when the context carries one). Not idempotent by itself: the receiver
    recognises a resend by MSH-10. Raises ``ValueError`` for a malformed endpoint, ``MllpTimeout``,
    ``MllpConnectionError``, ``MllpTlsError`` or ``MllpFrameError`` (all ``MllpError``, an ``OSError``).
    """
    host, port = endpoint_split(endpoint)
    deadline = time.monotonic() + timeout
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError as exc:
        raise MllpTimeout(f"No connection to {endpoint} in time.") from exc
    except OSError as exc:
        raise MllpConnectionError(f"No connection to {endpoint} ({type(exc).__name__}).") from exc
    sock = raw
    try:
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(raw, server_hostname=host)
        sock.sendall(_frame(message))
        return _read_frame(sock, deadline, endpoint)
    except ssl.SSLError as exc:
        raise MllpTlsError(f"TLS with {endpoint} failed ({exc.reason or type(exc).__name__}).") from exc
    except MllpError:
        raise
    except TimeoutError as exc:
        raise MllpTimeout(f"No ACK from {endpoint} in time.") from exc
    except OSError as exc:
        raise MllpConnectionError(f"The connection to {endpoint} failed ({type(exc).__name__}).") from exc
    finally:
        sock.close()  # the TLS socket took over the raw one's descriptor
        raw.close()
