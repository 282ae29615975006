"""HL7 v2 messages as text: decode the bytes of an MLLP frame, check the header before anything else is believed,
parse with python-hl7, and build the ACK (HL7 v2.5.1 chapter 2: 2.5 "Message construction rules", 2.9.2 "Original
mode acknowledgment", 2.9.3 "Enhanced mode", 2.14.1 MSA, 2.14.5 ERR).

python-hl7 (``hl7`` 0.4.5) is the parser: small, pure Python, no schema, so a message with unknown or extra
segments still parses and the handler reads only the fields it needs (lenient reading, docs/style.md). hl7apy's
validation would refuse the Z-segments and the loose v2.3 messages Epic Bridges feeds send.
"""

import re
import secrets
from dataclasses import dataclass
from typing import Any

import hl7
from django.utils import timezone

FIELD_SEPARATOR = "|"
ENCODING_CHARACTERS = "^~\\&"  # MSH-2, exactly (2.5.4 "Message delimiters")
SEGMENT_SEPARATOR = "\r"
# Character sets of MSH-18 this listener decodes (HL7 Table 0211); UTF-8 is tried first whatever MSH-18 says.
_LATIN1_CHARSETS = {"8859/1", "ISO-8859-1", "ISO IR100", "ASCII", ""}
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


class HeaderError(ValueError):
    """The message's MSH cannot be trusted: not HL7, wrong delimiters, a field the listener needs is missing.

    ``control_id`` is MSH-10 when it could still be read (the ACK echoes it), ``""`` otherwise (nothing can be
    answered: the connection is closed). ``location`` is the field (``"MSH-2"``), ``text`` what is wrong (no PHI).
    """

    def __init__(self, text: str, *, location: str = "", control_id: str = "", header: "Header | None" = None):
        super().__init__(text)
        self.text, self.location, self.control_id, self.header = text, location, control_id, header


@dataclass(frozen=True)
class Header:
    """What the listener reads of MSH before trusting the rest, each field's first component, stripped:
    ``sending_application`` MSH-3, ``sending_facility`` MSH-4, ``receiving_application`` MSH-5,
    ``receiving_facility`` MSH-6, ``message_type`` MSH-9.1^MSH-9.2 (``"ORM^O01"``), ``trigger`` MSH-9.2,
    ``control_id`` MSH-10, ``processing_id`` MSH-11.1 (``P``, ``T``, ``D``), ``version`` MSH-12.1 (``"2.5.1"``),
    ``accept_ack`` MSH-15, ``application_ack`` MSH-16, ``charset`` MSH-18."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    trigger: str
    control_id: str
    processing_id: str
    version: str
    accept_ack: str = ""
    application_ack: str = ""
    charset: str = ""

    @property
    def sender(self) -> str:
        """``MSH-3^MSH-4`` (``"EPIC^SANDBOXHOSP"``): with MSH-10, what makes a message unique."""
        return f"{self.sending_application}^{self.sending_facility}"

    @property
    def enhanced(self) -> bool:
        """Whether the sender asked for enhanced mode (MSH-15 or MSH-16 valued; 2.9.3)."""
        return bool(self.accept_ack or self.application_ack)


def hl7_decode(raw: bytes) -> str:
    """Return ``raw`` as text: UTF-8 when it decodes, else ISO 8859-1 (MSH-18 ``8859/1``, or no MSH-18: the v2
    default is ASCII and interface engines send Latin-1 for it). Raises ``HeaderError`` for any other MSH-18 that
    is not UTF-8 (``UNICODE UTF-8``), and for bytes that are no text (NUL or other control characters)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
        charset = _field(text, 18).split("^")[0].strip().upper() if text.startswith("MSH") else ""
        if charset not in _LATIN1_CHARSETS:
            raise HeaderError(
                "The message is not UTF-8 and MSH-18 names no character set this interface reads.",
                location="MSH-18",
                control_id=_field(text, 10).split("^")[0].strip(),
            ) from None
    if any(ord(ch) < 32 and ch not in "\r\n\t" for ch in text):
        raise HeaderError("The message holds binary data.", control_id=_readable_control_id(text))
    return text


def _readable_control_id(text: str) -> str:
    if not text.startswith("MSH|"):
        return ""
    control = _field(text, 10).split("^")[0].strip()
    return control if control.isprintable() else ""


def _field(text: str, number: int) -> str:
    """Return MSH-``number`` of ``text`` (the message), by the field separator MSH-1; ``""`` when absent."""
    first = text.split("\r", 1)[0].split("\n", 1)[0]
    if len(first) < 4:
        return ""
    parts = first[4:].split(first[3])  # parts[0] is MSH-2
    return parts[number - 2] if 2 <= number < len(parts) + 2 else ""


def header_read(text: str) -> Header:
    """Return the MSH of ``text`` (a decoded message). Raises ``HeaderError``: not starting with ``MSH``, MSH-1
    not ``|`` or MSH-2 not ``^~\\&`` exactly (2.5.4), MSH-10 missing (nothing to echo), MSH-9 missing."""
    text = text.lstrip("\n")
    if not text.startswith("MSH"):
        raise HeaderError("The message does not start with MSH.", location="MSH")
    control_id = _field(text, 10).split("^")[0].strip() if text[3:4] == FIELD_SEPARATOR else ""
    if text[3:4] != FIELD_SEPARATOR:
        raise HeaderError("MSH-1 must be |.", location="MSH-1")
    if _field(text, 2) != ENCODING_CHARACTERS:
        raise HeaderError("MSH-2 must be ^~\\& exactly.", location="MSH-2", control_id=control_id)
    if not control_id:
        raise HeaderError("MSH-10 (message control ID) is empty.", location="MSH-10")
    if len(control_id) > 199:
        raise HeaderError("MSH-10 (message control ID) is too long.", location="MSH-10")

    def first(number: int, component: int = 0) -> str:
        parts = _field(text, number).split("~")[0].split("^")
        return _unescape(parts[component].split("&")[0].strip()) if component < len(parts) else ""

    header = Header(
        sending_application=first(3)[:90],
        sending_facility=first(4)[:90],
        receiving_application=first(5)[:90],
        receiving_facility=first(6)[:90],
        message_type=f"{first(9)}^{first(9, 1)}"[:40],
        trigger=first(9, 1)[:10],
        control_id=control_id,
        processing_id=first(11),
        version=first(12),
        accept_ack=first(15),
        application_ack=first(16),
        charset=first(18),
    )
    if not first(9):
        raise HeaderError("MSH-9 (message type) is empty.", location="MSH-9", control_id=control_id, header=header)
    return header


def hl7_parse(text: str) -> Any:
    """Return ``text`` parsed by python-hl7 (an ``hl7.Message``; segments split on CR, and on LF or CRLF that some
    senders use). Raises ``HeaderError`` when a line is not a segment (no three-character id)."""
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    for number, line in enumerate(lines, 1):
        if not _SEGMENT_ID.match(line[:3]) or (len(line) > 3 and line[3] != FIELD_SEPARATOR):
            raise HeaderError(f"Segment {number} is not an HL7 segment.", location=f"segment {number}")
    try:
        return hl7.parse(SEGMENT_SEPARATOR.join(lines))
    except Exception as exc:  # python-hl7 raises ParseException, IndexError, ValueError...
        raise HeaderError(f"The message could not be parsed ({type(exc).__name__}).") from None


def _escape(value: str) -> str:
    """Escape the delimiters in a free-text value (2.7 "Use of escape sequences in text fields")."""
    for char, sequence in _ESCAPES:
        value = value.replace(char, sequence)
    return value.replace("\r", " ").replace("\n", " ")


def _unescape(value: str) -> str:
    for char, sequence in reversed(_ESCAPES):
        value = value.replace(sequence, char)
    return value


def location_err(location: str) -> str:
    """Return ERR-2 (ERL: segment^sequence^field[^component]) for ``"PID-11"``, ``"PID-11.2"`` or ``"MSH-9"``:
    ``"PID^1^11"``, ``"PID^1^11^2"``; ``""`` for a location that names no field ("MSH", "segment 3")."""
    match = re.fullmatch(r"([A-Z][A-Z0-9]{2})-(\d+)(?:\.(\d+))?", location.strip())
    if not match:
        return ""
    segment, field, component = match.groups()
    return "^".join([segment, "1", field, *([component] if component else [])])


# ERR-3 (HL7 Table 0357 message error condition codes) per kind of refusal.
ERROR_CODES = {
    "segment": ("100", "Segment sequence error"),
    "required": ("101", "Required field missing"),
    "type": ("102", "Data type error"),
    "table": ("103", "Table value not found"),
    "message_type": ("200", "Unsupported message type"),
    "event": ("201", "Unsupported event code"),
    "processing": ("202", "Unsupported processing id"),
    "version": ("203", "Unsupported version id"),
    "key": ("204", "Unknown key identifier"),
    "duplicate": ("205", "Duplicate key identifier"),
    "rejected": ("207", "Application internal error"),
}
# ERR-3 for a refusal or error whose kind is not given: application record locked / internal error.
_DEFAULT_ERROR = ("207", "Application internal error")


def ack_build(
    *,
    header: Header | None,
    code: str,
    text: str = "",
    location: str = "",
    error: tuple[str, str] | None = None,
    control_id: str = "",
) -> str:
    """Return the ER7 ACK for a message with MSH ``header`` (None when the MSH could not be read; then
    ``control_id`` is echoed): MSH with sender and receiver swapped, MSH-7 now (UTC), MSH-9 ``ACK^<trigger>^ACK``,
    MSH-10 a new id, MSH-11 and MSH-12 echoed (``P``, ``2.5.1`` when unknown); MSA-1 ``code`` (AA, AE, AR, CA, CE,
    CR), MSA-2 the message's MSH-10, MSA-3 ``text``; for any code but AA and CA an ERR segment: ERR-2 the location
    (``location_err``), ERR-3 ``error`` (Table 0357 code and text; 207 by default), ERR-4 severity ``E``, ERR-8
    ``text``. Segments end with CR (2.5). ``text`` must hold no PHI: it is stored with the message."""
    now = timezone.now().strftime("%Y%m%d%H%M%S")
    echo = header.control_id if header else control_id
    msh = [
        "MSH",
        ENCODING_CHARACTERS,
        _escape(header.receiving_application if header else "") or "HEALTHCOMMERCE",
        _escape(header.receiving_facility if header else ""),
        _escape(header.sending_application if header else ""),
        _escape(header.sending_facility if header else ""),
        now,
        "",
        f"ACK^{_escape(header.trigger) if header else ''}^ACK",
        f"HC{secrets.token_hex(10)}",
        _escape(header.processing_id) if header and header.processing_id else "P",
        _escape(header.version) if header and header.version else "2.5.1",
    ]
    segments = ["|".join(msh), "|".join(["MSA", code, _escape(echo), _escape(text[:80])])]
    if code not in ("AA", "CA"):
        err_code, err_text = error or _DEFAULT_ERROR
        segments.append(
            "|".join(
                ["ERR", "", location_err(location), f"{err_code}^{err_text}^HL70357", "E", "", "", "", _escape(text)]
            )
        )
    return SEGMENT_SEPARATOR.join(segments) + SEGMENT_SEPARATOR


def ack_read(text: str) -> tuple[str, str]:
    """Return (MSA-1, MSA-2) of an ACK ``text``; ``("", "")`` when it has no MSA (for clients and tests)."""
    for line in re.split(r"\r\n|\r|\n", text):
        if line.startswith("MSA|"):
            parts = line.split("|")
            return (parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")
    return ("", "")
