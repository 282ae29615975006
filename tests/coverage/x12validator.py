"""The independent X12 validator for the eligibility tests: linuxforhealth-x12 0.57.0's X279A1 models, which need
pydantic 1, so they run in a venv of their own, ``.venv-x12`` (``make x12-validator-setup``, pinned by
tests/peers/x12validator/requirements.txt), driven by ``tests/peers/x12validator/validate.py`` over a pipe.

Outside CI a missing validator skips the test with a reason naming ``make x12-validator-setup``; with ``CI`` set it
fails (``require_x12_validator``), as the HL7 peer does (tests/peers/hl7peer.py). ADR 0025.
"""

import json
import re
import subprocess

import pytest

from tests.conftest import IN_CI
from tests.servers import ROOT

VENV = ROOT / ".venv-x12"
PYTHON = VENV / "bin" / "python"
SCRIPT = ROOT / "tests" / "peers" / "x12validator" / "validate.py"
REQUIREMENTS = ROOT / "tests" / "peers" / "x12validator" / "requirements.txt"


def pinned_versions() -> dict[str, str]:
    """The versions requirements.txt pins (``{"linuxforhealth_x12": "0.57.0", "pydantic": "1.10.27", ...}``, names
    as their dist-info folders spell them)."""
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", REQUIREMENTS.read_text(), re.MULTILINE)
    return {name.replace("-", "_").lower(): version for name, version in pins}


def installed_versions() -> dict[str, str]:
    """The versions installed in .venv-x12 (read from its dist-info folders; an absent package is left out)."""
    found = {}
    for info in VENV.glob("lib/python*/site-packages/*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
        found[name.lower()] = version
    return found


def x12_validator_missing() -> str | None:
    """Why the X12 validator cannot run here, or ``None``. Every reason says "X12 validator" (tests/skips.py)."""
    if not PYTHON.exists():
        return "the X12 validator's venv .venv-x12 is missing (make x12-validator-setup)"
    installed = installed_versions()
    if any(installed.get(name) != version for name, version in pinned_versions().items()):
        return "the X12 validator is not installed as pinned (make x12-validator-setup)"
    return None


def require_x12_validator() -> None:
    """Skip the test when the validator is missing (fail with ``CI`` set)."""
    reason = x12_validator_missing()
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason + "; CI runs it")


def x12_validate(text: str) -> dict:
    """Return the validator's verdict on the X12 ``text``: ``{"ok": bool, "errors": [str, ...]}``. Raises
    ``RuntimeError`` when the validator itself fails (no JSON on stdout)."""
    done = subprocess.run(
        [str(PYTHON), str(SCRIPT)], input=text, capture_output=True, text=True, timeout=120, check=False
    )
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"the X12 validator failed (exit {done.returncode}): {done.stderr[-2000:]}") from None
