"""What a browser would submit from a page's form, for tests and benchmarks that drive the app over HTTP."""

from html.parser import HTMLParser


class FormFields(HTMLParser):
    """Collect the values a browser would submit from the first ``<form method="post">`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "").lower() == "post":
            self._in_form = True
        elif not self._in_form or (not a.get("name") and tag != "option"):
            return
        elif tag == "input" and a.get("type") not in ("submit", "button"):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a["name"]
            self.fields.setdefault(a["name"], "")
        elif tag == "option" and self._select and "selected" in a:
            self.fields[self._select] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "form":
            self._in_form = False


def form_fields(html: str) -> dict[str, str]:
    """Return the name -> value pairs a browser would submit from the first POST form of ``html``."""
    parser = FormFields()
    parser.feed(html)
    return parser.fields
