"""The independent X12 validator (ADR 0025): reads one X12 interchange from stdin, parses it with linuxforhealth-x12
0.57.0's X279A1 models (pydantic 1), and prints one JSON object ``{"ok": bool, "errors": [str, ...]}``.

Runs only in its own venv, ``.venv-x12`` (``make x12-validator-setup``; tests/peers/x12validator/requirements.txt),
never in the app's: linuxforhealth-x12 needs pydantic 1. Driven by tests/coverage/x12validator.py. Exit status 0
whenever it printed a verdict.
"""

import json
import sys


def validate(text: str) -> dict:
    """Return ``{"ok": bool, "errors": [...]}`` for the X12 ``text``: ok when every transaction set parses into its
    model (envelope, loops, code lists, segment counts); each error names the model location and the message."""
    from linuxforhealth.x12.io import X12ModelReader
    from pydantic import ValidationError

    errors: list[str] = []
    models = 0
    text = text.lstrip("\ufeff \t\r\n").replace("\r", "")  # its reader drops LF after terminators, not CR
    try:
        with X12ModelReader(text) as reader:
            for _model in reader.models():
                models += 1
    except ValidationError as exc:
        for error in exc.errors():
            location = ".".join(str(part) for part in error.get("loc", ()))
            errors.append(f"{location}: {error.get('msg', '')}")
    except Exception as exc:  # any failure is a verdict, not a crash
        errors.append(f"{type(exc).__name__}: {exc}")
    if not errors and not models:
        errors.append("no transaction set found")
    return {"ok": not errors, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(validate(sys.stdin.read())))
