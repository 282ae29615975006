"""Server-rendered charts as inline SVG: no JavaScript, no CDN, nothing fetched (docs/adr/0018).

Built with ``format_html`` only, so every number and name is escaped."""

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

# One colour per outcome class, the same on every chart.
COLOURS = {
    "401": "#b91c1c",
    "403": "#dc2626",
    "404": "#9ca3af",
    "422": "#a16207",
    "429": "#d97706",
    "4xx": "#f59e0b",
    "5xx": "#7c3aed",
    "timeout": "#2563eb",
    "connection": "#0891b2",
    "other": "#6b7280",
}
WIDTH, HEIGHT, PAD = 720, 120, 4


def _frame(title: str, body: SafeString, peak: float, unit: str) -> SafeString:
    label = f"{title} (max {peak:.0f}{unit})"
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{}" width="{}" height="{}" '
        'viewBox="0 0 {} {}"><rect x="0" y="0" width="{}" height="{}" fill="#f9fafb" stroke="#e5e7eb"/>{}'
        '<text x="0" y="{}" font-size="11" fill="#374151">{}</text></svg>',
        label, WIDTH, HEIGHT + 18, WIDTH, HEIGHT + 18, WIDTH, HEIGHT, body, HEIGHT + 14, label,
    )  # fmt: skip


def bars(title: str, stacks: dict[str, list[int]], *, unit: str = "") -> SafeString:
    """Return stacked bars: ``stacks`` maps a series name (an outcome class, or ``calls``) to one value per slot,
    all of one length; colours from ``COLOURS`` (green for others)."""
    slots = max((len(v) for v in stacks.values()), default=0)
    totals = [sum(v[i] for v in stacks.values()) for i in range(slots)]
    peak = max(totals, default=0) or 1
    step = (WIDTH - 2 * PAD) / max(slots, 1)
    rects: list[tuple[str, str, str, str, str, str, int]] = []
    for i in range(slots):
        base = float(HEIGHT - PAD)
        for name, values in stacks.items():
            if not values[i]:
                continue
            h = (HEIGHT - 2 * PAD) * values[i] / peak
            base -= h
            x, w = f"{PAD + i * step:.1f}", f"{max(step - 1, 1):.1f}"
            rects.append((x, f"{base:.1f}", w, f"{h:.1f}", COLOURS.get(name, "#4d7c0f"), name, values[i]))
    body = format_html_join(
        "", '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}</title></rect>', rects
    )
    return _frame(title, body, max(totals, default=0), unit)


def line(title: str, values: list[float | None], *, unit: str = "") -> SafeString:
    """Return a line through the slots that have a value (gaps where ``None``), scaled to the largest."""
    present = [v for v in values if v is not None]
    peak = max(present, default=0.0) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(values), 1)
    segments: list[list[str]] = []
    current: list[str] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                segments.append(current)
            current = []
            continue
        x, y = PAD + i * step + step / 2, HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / peak
        current.append(f"{x:.1f},{y:.1f}")
    if current:
        segments.append(current)
    # A lone point gets a doubled point so the round line cap draws a dot.
    body = format_html_join(
        "",
        '<polyline points="{}" fill="none" stroke="#1d4ed8" stroke-width="2" stroke-linecap="round"/>',
        ((" ".join(points if len(points) > 1 else points * 2),) for points in segments),
    )
    return _frame(title, body, max(present, default=0.0), unit)
