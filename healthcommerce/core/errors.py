"""One error base class with a code and an HTTP status (docs/style.md 6, after Zulip's ``JsonableError``)."""


class HealthcommerceError(Exception):
    """Base of every error the app raises on purpose.

    ``code`` is a stable machine-readable slug, ``status`` the HTTP status a view answers with,
    ``message`` a sentence safe to show a user (never PHI, never a stack trace). ``temporary`` says
    whether retrying the same operation later may succeed.
    """

    code = "error"
    status = 400
    temporary = False
    message = "Something went wrong."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        super().__init__(self.message)


class NotFound(HealthcommerceError):
    """The object is missing or belongs to someone else; both answer the same (docs/style.md 5)."""

    code = "not_found"
    status = 404
    message = "Not found."


class OutboundRefused(HealthcommerceError):
    """An outbound request to a host that is not allowed."""

    code = "outbound_refused"
    status = 400
    message = "That server is not registered."
