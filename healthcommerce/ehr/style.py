"""The EHR's look for the clinician pages: fetch a launch's ``smart_style_url`` and turn it into CSS variables.

SMART App Launch 2.2 "Styling": the token response may carry ``smart_style_url``, a JSON document with
``color_background``, ``color_highlight``, ``dim_border_radius``, ``font_family_body`` and so on, so an app
framed in the EHR can look like it. The document is fetched server-side with the outbound client (https, or
http on loopback; timeouts; no redirects), at most ``MAX_BYTES``, cached per URL, and only values that match a
strict pattern (a CSS colour, a length, a plain font list) ever reach the generated style sheet. Anything else
falls back to the app's own colours in ``static/css/app.css``.
"""

import hashlib
import json
import logging
import re
from typing import Any

import requests
from django.conf import settings
from django.core.cache import cache

from healthcommerce.core.errors import OutboundRefused
from healthcommerce.core.http import outbound_session

logger = logging.getLogger(__name__)

MAX_BYTES = 16_384  # a style document is a few hundred bytes
CACHE_PREFIX = "smart-style:"

# Colours: #rgb, #rgba, #rrggbb, #rrggbbaa, rgb()/rgba()/hsl()/hsla() with plain numbers (CSS Color 4).
_NUMBER = r"\d{1,3}(?:\.\d{1,4})?"
_COMPONENT = rf"{_NUMBER}(?:%|deg)?"
_ALPHA = rf"(?:{_NUMBER}%?|0?\.\d{{1,4}})"
_COLOUR = re.compile(
    r"^(?:#(?:[0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})"
    rf"|(?:rgba?|hsla?)\(\s*{_COMPONENT}(?:\s*,\s*|\s+){_COMPONENT}(?:\s*,\s*|\s+){_COMPONENT}"
    rf"(?:\s*[,/]\s*{_ALPHA})?\s*\))$",
    re.IGNORECASE,
)
# Lengths: 0, or a number of px, rem or em up to 999.
_LENGTH = re.compile(r"^(?:0|\d{1,3}(?:\.\d{1,3})?(?:px|rem|em))$")
# Font families: CSS generic keywords, or a name of letters, digits, spaces and hyphens (re-quoted on output).
_GENERIC_FONTS = {
    "serif",
    "sans-serif",
    "monospace",
    "cursive",
    "fantasy",
    "system-ui",
    "ui-serif",
    "ui-sans-serif",
    "ui-monospace",
    "ui-rounded",
    "-apple-system",
    "blinkmacsystemfont",
}
_FONT_NAME = re.compile(
    r"""^(?:'([A-Za-z][A-Za-z0-9 -]{0,39})'|"([A-Za-z][A-Za-z0-9 -]{0,39})"|([A-Za-z][A-Za-z0-9 -]{0,39}))$"""
)
_MAX_FONTS = 8

# SMART style key -> (CSS custom property in static/css/app.css, kind of value).
PROPERTIES: dict[str, tuple[str, str]] = {
    "color_background": ("--bg", "colour"),
    "color_text": ("--ink", "colour"),
    "color_highlight": ("--accent", "colour"),
    "color_border": ("--line", "colour"),
    "color_error": ("--bad", "colour"),
    "color_success": ("--ok", "colour"),
    "dim_border_radius": ("--radius", "length"),
    "dim_font_size": ("--font-size", "length"),
    "font_family_body": ("--font", "font"),
    "font_family": ("--font", "font"),  # older name some EHRs send; font_family_body wins
    "font_family_heading": ("--font-heading", "font"),
}


def _font(value: str) -> str | None:
    """Return ``value`` (a CSS font-family list) re-serialized with every name double-quoted, or None."""
    families = [part.strip() for part in value.split(",")]
    if not families or len(families) > _MAX_FONTS:
        return None
    out = []
    for family in families:
        if family.lower() in _GENERIC_FONTS:
            out.append(family)
            continue
        match = _FONT_NAME.match(family)
        if match is None:
            return None
        name = next(group for group in match.groups() if group)
        out.append(f'"{" ".join(name.split())}"')
    return ", ".join(out)


def style_value(kind: str, value: Any) -> str | None:
    """Return ``value`` as safe CSS for ``kind`` (``colour``, ``length`` or ``font``), or None to drop it.

    Only exact matches of the patterns above pass: no ``url()``, ``var()``, ``;``, braces, quotes or comments
    can reach the style sheet.
    """
    if not isinstance(value, str) or len(value) > 200:
        return None
    value = value.strip()
    if kind == "colour":
        return value if _COLOUR.match(value) else None
    if kind == "length":
        return value if _LENGTH.match(value) else None
    if kind == "font":
        return _font(value)
    return None


def style_properties(document: Any) -> dict[str, str]:
    """Return the CSS custom properties (``{"--accent": "#1f6feb", ...}``) for a SMART style ``document``.

    Unknown keys and values that are not a valid colour, length or plain font list are dropped; a document
    that is not a JSON object gives ``{}``.
    """
    if not isinstance(document, dict):
        return {}
    properties: dict[str, str] = {}
    for key, (prop, kind) in PROPERTIES.items():
        value = style_value(kind, document.get(key))
        if value is not None and prop not in properties:
            properties[prop] = value
    return properties


def _fetch(url: str) -> dict[str, str]:
    """GET ``url`` (no redirects, at most ``MAX_BYTES``) and return its style properties.

    Raises ``OutboundRefused``, ``requests.RequestException`` or ``ValueError`` (not 200, too large, not JSON).
    """
    with outbound_session(kind="style") as session:  # site: the caller's core.metrics.integration block
        response = session.get(url, headers={"Accept": "application/json"}, allow_redirects=False, stream=True)
        with response:
            if response.status_code != 200:
                raise ValueError("style_status")
            body = response.raw.read(MAX_BYTES + 1, decode_content=True)
    if len(body) > MAX_BYTES:
        raise ValueError("style_too_large")
    return style_properties(json.loads(body))


def smart_style_properties(url: str) -> dict[str, str]:
    """Return the CSS custom properties of the SMART style document at ``url``; ``{}`` when there is none.

    Cached per URL for ``SMART_STYLE_TTL`` seconds (a failure for ``SMART_STYLE_FAILURE_TTL``), so a page
    view makes at most one outbound request per URL and period. Never raises: a failure is logged with its
    kind only (no URL, no PHI) and means the app's default colours.
    """
    if not url:
        return {}
    key = CACHE_PREFIX + hashlib.sha256(url.encode()).hexdigest()
    cached = cache.get(key)
    if isinstance(cached, dict):
        return cached
    try:
        properties = _fetch(url)
    # JSONDecodeError is a ValueError; a deeply nested body is a RecursionError.
    except (OutboundRefused, requests.RequestException, ValueError, RecursionError) as exc:
        reason = str(exc) if str(exc).startswith("style_") else type(exc).__name__
        logger.info("smart_style_url not used: %s", reason)
        cache.set(key, {}, settings.SMART_STYLE_FAILURE_TTL)
        return {}
    cache.set(key, properties, settings.SMART_STYLE_TTL)
    return properties


def style_sheet(properties: dict[str, str]) -> str:
    """Return a CSS style sheet setting ``properties`` (from ``style_properties``) on ``:root``."""
    if not properties:
        return "/* no EHR style: the app's default colours apply */\n"
    lines = "".join(f"  {name}: {value};\n" for name, value in sorted(properties.items()))
    return f'/* SMART App Launch 2.2 "Styling": the EHR style (smart_style_url) */\n:root {{\n{lines}}}\n'
