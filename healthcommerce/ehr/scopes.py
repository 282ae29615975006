"""The SMART scopes a new EHR site asks for by default (``EHRSite.scopes``): the launch's own, then those each later
stage registers from its ``AppConfig.ready()`` (``orders`` registers what pre-fill reads: ``orders.fields.SOURCES``),
so ``ehr`` imports no stage. A site keeps the scopes stored on it; this is only the default of a new one.

Source: SMART App Launch 2.2 "Scopes and Launch Context" (``launch``, ``openid``, ``fhirUser``, ``patient/`` and
``user/`` resource scopes).
"""

LAUNCH = ("launch", "openid", "fhirUser")
_registered: list[str] = []


def scope_register(scope: str) -> None:
    """Add ``scope`` (one scope, such as ``patient/Coverage.rs``) to the default; registering it again is a no-op."""
    if scope not in _registered:
        _registered.append(scope)


def default_scopes() -> str:
    """Return the default scopes, space-separated: ``LAUNCH``, then the registered ones in registration order."""
    return " ".join(dict.fromkeys([*LAUNCH, *_registered]))
