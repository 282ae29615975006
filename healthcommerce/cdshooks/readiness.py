"""CDS Hooks' part of the go-live readiness check (``golive.readiness`` runs it through ``ehr.sitefeatures``).

Source: CDS Hooks 2.0 "Trusting CDS Clients" (the service allowlists ``iss`` and ``jku``; RS384 and ES384 are the
recommended algorithms, the only ones ``cdshooks.auth`` accepts). The checks never show PHI.
"""

from collections.abc import Iterator

from healthcommerce.cdshooks.auth import cds_jwks_fetch
from healthcommerce.cdshooks.errors import CdsJwksUnavailable
from healthcommerce.cdshooks.models import CdsHooksSite
from healthcommerce.core.http import url_allowed
from healthcommerce.ehr.models import EHRSite
from healthcommerce.ehr.sitefeatures import FAIL, PASS, Check


def _jwks(site: EHRSite, jku: str) -> Check:
    """Fetch the EHR's JWK Set at ``jku`` as a hook call would, and say whether it has a usable key."""
    try:
        keys = cds_jwks_fetch(site, jku)["keys"]
    except CdsJwksUnavailable:
        return Check(
            "cds_jwks",
            FAIL,
            f"The EHR's JWK Set at {jku} could not be read: every hook call would be refused.",
            "Check the URL with the EHR team (it must answer a JWK Set over https, without a redirect).",
        )
    usable = [k for k in keys if k.get("kty") in ("RSA", "EC") and k.get("alg") in (None, "RS384", "ES384")]
    if usable:
        return Check("cds_jwks", PASS, f"{jku}: {len(usable)} RS384/ES384-capable key(s).")
    return Check(
        "cds_jwks",
        FAIL,
        f"{jku} has no RSA or EC key usable with RS384 or ES384.",
        "Ask the EHR team which JWKS signs its CDS Hooks calls.",
    )


def cds_readiness(site: EHRSite) -> Iterator[Check]:
    """Yield the CDS Hooks checks of ``site`` (none when its CDS Hooks are off): the allowlists are set and
    reachable (``cds_hooks``), and each allowlisted ``jku`` answers a JWK Set with an RS384/ES384 key
    (``cds_jwks``). Raises nothing: every problem is a failing check."""
    cds = CdsHooksSite.of(site)
    if not cds.cds_hooks_enabled:
        return
    problems = []
    if not cds.cds_issuers:
        problems.append("no allowed iss")
    if not cds.cds_jku_allowlist:
        problems.append("no allowed jku")
    problems += [f"jku not https: {u}" for u in cds.cds_jku_allowlist if not url_allowed(str(u))]
    if problems:
        yield Check(
            "cds_hooks",
            FAIL,
            "CDS Hooks enabled with " + "; ".join(problems) + ".",
            "Set the EHR's CDS Hooks issuer (usually the FHIR base) and its JWKS URL on the site.",
        )
        return
    yield Check("cds_hooks", PASS, f"{len(cds.cds_issuers)} issuer(s), {len(cds.cds_jku_allowlist)} jku allowed.")
    for jku in cds.cds_jku_allowlist:
        yield _jwks(site, str(jku))
