"""Production mode: the app refuses unsafe settings with one line each, and passes Django's deploy check when
configured like a hospital would (docs/deploy.md)."""

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from healthcommerce.core.deploy import (
    EX_CONFIG,
    REPOSITORY_SECRETS,
    ProductionConfig,
    dev_field_encryption_key,
    production_problems,
    redis_cache_url,
)
from tests.servers import ROOT, base_env, self_signed_certificate

PRODUCTION_ENV = {
    "DEBUG": "false",
    "SANDBOX_ENABLED": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "APP_BASE_URL": "https://healthcommerce.example-health.org",
    "DATABASE_URL": "postgres://healthcommerce@db.internal:5432/healthcommerce",
    "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
    "EMAIL_URL": f"smtp+tls://mailer:{secrets.token_urlsafe(16)}@relay.example-health.org:587",
    "FIELD_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
    # The TLS proxy in front (SECURE_PROXY_SSL_HEADER is on by default in production) and its address.
    "TRUSTED_PROXIES": "10.0.0.0/8",
}
FIT = ProductionConfig(
    secret_key="k" * 60,
    app_base_url="https://hc.example.org",
    email_backend="django.core.mail.backends.smtp.EmailBackend",
    database_engine="django.db.backends.postgresql",
    broker_url="redis://r:6379/0",
    cache_backend="django.core.cache.backends.redis.RedisCache",
    field_encryption_keys=(Fernet.generate_key().decode(),),
)


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _hl7_tls_env(folder: Path) -> dict[str, str]:
    """``HL7_TLS_*`` naming a certificate, its key and a CA bundle written into ``folder``."""
    tls = self_signed_certificate(folder)
    return {"HL7_TLS_CERT": str(tls.certfile), "HL7_TLS_KEY": str(tls.keyfile), "HL7_TLS_CLIENT_CA": str(tls.certfile)}


@pytest.mark.parametrize("hl7", ["without HL7 intake", "with HL7 intake over TLS"])
def test_a_production_environment_passes_the_deploy_check_at_warning_level(tmp_path: Path, hl7: str) -> None:
    tls = _hl7_tls_env(tmp_path) if hl7.endswith("TLS") else {}
    done = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV, **tls)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_the_deploy_check_fails_when_the_hl7_listeners_tls_is_half_set(tmp_path: Path) -> None:
    """Issue 20: production's MLLP listener speaks TLS with client certificates only: once one HL7_TLS_* is set, the
    others must be, naming readable files."""
    tls = _hl7_tls_env(tmp_path)
    done = _manage("check", "--deploy", **PRODUCTION_ENV, HL7_TLS_CERT=tls["HL7_TLS_CERT"], HL7_TLS_KEY="/nonexistent")

    assert done.returncode != 0
    assert "HL7_TLS_CLIENT_CA is not set" in done.stderr and "HL7_TLS_KEY names no readable file" in done.stderr
    assert done.stderr.count("intake.E001") == 2


def test_hl7_listen_in_production_without_tls_says_intake_is_off_and_listens_on_nothing() -> None:
    """Issue 20: no certificates, no HL7 feed: the Procfile's hl7 process waits, so `make serve` runs the rest."""
    import signal
    import time

    env = {name: value for name, value in base_env(**PRODUCTION_ENV).items() if not name.startswith("HL7_TLS_")}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "hl7_listen", "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "HL7 v2 intake is off" in line and "HL7_TLS_CERT" in line
        time.sleep(0.3)
        assert proc.poll() is None  # still running, listening on nothing
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("SECRET_KEY", "insecure-dev-only-change-me"),
        ("APP_BASE_URL", "http://healthcommerce.example-health.org"),
        ("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"),
        ("DATABASE_URL", "sqlite:///var/db.sqlite3"),
        ("CELERY_BROKER_URL", "filesystem://"),
        ("FIELD_ENCRYPTION_KEYS", ""),
        ("FIELD_ENCRYPTION_KEYS", f"{Fernet.generate_key().decode()},not-a-fernet-key"),
    ],
)
def test_with_debug_off_it_refuses_to_start_with_one_line_naming_the_setting(setting: str, value: str) -> None:
    done = _manage("check", **(PRODUCTION_ENV | {setting: value}))

    assert done.returncode == EX_CONFIG
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("healthcommerce refuses to start (DEBUG is off): " + setting)
    assert "Traceback" not in done.stderr


def test_the_embedded_defaults_are_refused_all_at_once_with_debug_off() -> None:
    done = _manage("check", DEBUG="false", SANDBOX_ENABLED="false", FIELD_ENCRYPTION_KEYS="")

    lines = done.stderr.strip().splitlines()
    named = [line.split(": ", 1)[1].split(" ", 1)[0] for line in lines if line.startswith("healthcommerce refuses")]
    assert done.returncode == EX_CONFIG
    assert named == [
        "SECRET_KEY",
        "APP_BASE_URL",
        "EMAIL_BACKEND",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "FIELD_ENCRYPTION_KEYS",
        "TRUSTED_PROXIES",
    ]


def test_a_bad_field_key_is_named_by_position_never_shown() -> None:
    bad = "short-key-do-not-echo"
    problems = production_problems(ProductionConfig(**(FIT.__dict__ | {"field_encryption_keys": ("x" * 44, bad)})))

    assert len(problems) == 1 and problems[0].startswith("FIELD_ENCRYPTION_KEYS has 2 key(s)")
    assert "position 1, 2" in problems[0] and bad not in problems[0]


def test_embedded_mode_makes_one_field_key_under_the_var_dir_and_keeps_it(tmp_path: Path) -> None:
    first = dev_field_encryption_key(tmp_path)

    assert Fernet(first.encode())  # a real Fernet key
    assert dev_field_encryption_key(tmp_path) == first
    assert (tmp_path / "field-encryption.key").stat().st_mode & 0o777 == 0o600


def test_a_fit_configuration_has_no_problems() -> None:
    assert production_problems(FIT) == []


def test_a_short_secret_key_or_a_per_process_cache_is_a_problem() -> None:
    short = production_problems(ProductionConfig(**(FIT.__dict__ | {"secret_key": "short"})))
    amqp = ProductionConfig(
        **(FIT.__dict__ | {"broker_url": "amqp://mq", "cache_backend": "django.core.cache.backends.locmem.LocMemCache"})
    )

    folder = ProductionConfig(
        **(
            FIT.__dict__
            | {"broker_url": "amqp://mq", "cache_backend": "django.core.cache.backends.filebased.FileBasedCache"}
        )
    )

    assert [p.split(" ")[0] for p in short] == ["SECRET_KEY"]
    assert [p.split(" ")[0] for p in production_problems(amqp)] == ["CACHE_URL"]
    assert [p.split(" ")[0] for p in production_problems(folder)] == ["CACHE_URL"]  # one host only


def test_the_cache_shares_the_brokers_redis_server_on_the_next_database() -> None:
    assert redis_cache_url("redis://redis.internal:6379/0") == "redis://redis.internal:6379/1"
    assert redis_cache_url("rediss://:pw@redis.internal:6380") == "rediss://:pw@redis.internal:6380/1"
    assert redis_cache_url("redis://r:6379/15") == "redis://r:6379/0"
    assert redis_cache_url("filesystem://") == ""


def test_the_filesystem_broker_keeps_every_folder_under_var(tmp_path) -> None:  # type: ignore[no-untyped-def]
    show = "import django, json; django.setup(); from django.conf import settings as s; "
    show += "print(json.dumps(s.CELERY_BROKER_TRANSPORT_OPTIONS))"
    env = base_env(SANDBOX_ENABLED="true", CELERY_BROKER_URL="filesystem://", HC_VAR_DIR=str(tmp_path / "var"))
    done = subprocess.run(
        [sys.executable, "-c", show], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    options = json.loads(done.stdout.strip().splitlines()[-1])
    folders = {key: value for key, value in options.items() if key.endswith("folder") or key.startswith("data_folder")}

    assert set(folders) == {"data_folder_in", "data_folder_out", "processed_folder", "control_folder"}
    assert all(Path(folder).is_relative_to(tmp_path / "var" / "broker") for folder in folders.values())
    assert all(Path(folder).is_dir() for folder in folders.values())
    assert not (ROOT / "control").exists()


def test_sms_is_optional_in_production_but_a_twilio_backend_needs_its_credentials() -> None:
    twilio = ProductionConfig(**(FIT.__dict__ | {"sms_backend": "sms.backends.twilio.SmsBackend"}))
    console = ProductionConfig(**(FIT.__dict__ | {"sms_backend": "sms.backends.console.SmsBackend", "sms_from": "x"}))
    configured = ProductionConfig(
        **(twilio.__dict__ | {"twilio_account_sid": "AC0", "twilio_auth_token": "t", "sms_from": "+12075550100"})
    )

    assert production_problems(FIT) == []  # no SMS_BACKEND: email only
    named = [p.split(" ")[0] for p in production_problems(twilio)]
    assert named[0] == "SMS_BACKEND" and "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in production_problems(twilio)[0]
    assert named[-1] == "SMS_FROM"
    assert [p.split(" ")[0] for p in production_problems(console)] == ["SMS_BACKEND"]
    assert all("TWILIO" not in p for p in production_problems(configured))


def test_a_twilio_backend_without_credentials_refuses_to_start_naming_each_setting() -> None:
    done = _manage("check", "--deploy", **(PRODUCTION_ENV | {"SMS_BACKEND": "sms.backends.twilio.SmsBackend"}))

    named = [line.split(": ", 1)[1].split(" ", 1)[0] for line in done.stderr.strip().splitlines()]
    assert done.returncode == EX_CONFIG
    assert named[0] == "SMS_BACKEND" and named[-1] == "SMS_FROM"
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in done.stderr


def test_behind_a_declared_proxy_it_refuses_to_start_without_trusted_proxies() -> None:
    """Issue 18: with no trusted proxy every client is the proxy's 127.0.0.1, so /metrics is public and one
    client's wrong birth dates lock every patient's link. The default SECURE_PROXY_SSL_HEADER declares a proxy."""
    done = _manage("check", **(PRODUCTION_ENV | {"TRUSTED_PROXIES": ""}))

    lines = done.stderr.strip().splitlines()
    assert done.returncode == EX_CONFIG
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("healthcommerce refuses to start (DEBUG is off): TRUSTED_PROXIES is empty")
    assert "SECURE_PROXY_SSL_HEADER" in lines[0]


def test_with_tls_ending_at_gunicorn_no_proxy_is_declared_and_none_need_be_trusted() -> None:
    done = _manage("check", **(PRODUCTION_ENV | {"TRUSTED_PROXIES": "", "SECURE_PROXY_SSL_HEADER": ""}))

    assert done.returncode == 0, done.stderr


DEMO = ROOT / "scripts" / "demo.sh"


def _demo_default(name: str) -> str:
    match = re.search(rf"\$\{{{name}:-([^}}]+)\}}", DEMO.read_text())
    assert match, f"scripts/demo.sh has no default for {name}"
    return match.group(1)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("STRIPE_SECRET_KEY", _demo_default("STRIPE_SECRET_KEY")),
        ("STRIPE_WEBHOOK_SECRET", _demo_default("STRIPE_WEBHOOK_SECRET")),
        ("EMAIL_URL", "smtp+tls://user:password@relay.example-health.org:587"),
        ("METRICS_TOKEN", "setup-only"),
    ],
)
def test_production_refuses_to_start_with_a_secret_this_repository_publishes(setting: str, value: str) -> None:
    secret = value.rsplit(":", 1)[-1].split("@")[0] if setting == "EMAIL_URL" else value
    done = _manage("check", **(PRODUCTION_ENV | {setting: value}))

    lines = done.stderr.strip().splitlines()
    assert done.returncode == EX_CONFIG, done.stderr
    named = "EMAIL_HOST_PASSWORD" if setting == "EMAIL_URL" else setting
    assert any(line.split(": ", 1)[1].startswith(f"{named} is a value published in this repository") for line in lines)
    assert secret not in done.stderr  # named, never shown


def test_every_secret_setting_is_checked_against_the_published_ones() -> None:
    names = ("STRIPE_PUBLISHABLE_KEY", "ALERT_WEBHOOK_SECRET", "METRICS_TOKEN", "WEBHOOK_SECRET", "MEDUSA_API_KEY")
    published = ProductionConfig(
        **(
            FIT.__dict__
            | {"secrets": tuple((name, "pk_test_demo") for name in names), "twilio_auth_token": "dev"}
            | {"secret_key": "insecure-dev-only-change-me"}
        )
    )

    named = [problem.split(" ")[0] for problem in production_problems(published)]
    assert named == ["SECRET_KEY", *names, "TWILIO_AUTH_TOKEN"]  # the development key: its own line, once
    assert production_problems(ProductionConfig(**(FIT.__dict__ | {"secrets": (("METRICS_TOKEN", "x" * 40),)}))) == []


# What the repository's files publish as secrets: a value assigned to a *SECRET*, *TOKEN*, *PASSWORD* or *_KEY(S)
# variable in a shell line or a document (``X=value``, ``${X:-value}``), a Stripe-shaped key anywhere, and the
# password in an smtp:// URL. Test code is left out: its secrets live only in test runs.
_SECRET_NAME = r"(?:[A-Z_]*(?:SECRET|TOKEN|PASSWORD)|[A-Z_]*_KEYS?)"
_ASSIGNED = re.compile(rf"\b{_SECRET_NAME}\s*(?:=|:-)\s*[\"']?([^\s\"'$`(){{}}<>\\,]+)")
_STRIPE_SHAPED = re.compile(r"\b((?:whsec|sk_test|sk_live|rk_test|rk_live|pk_test|pk_live)_[A-Za-z0-9+/=_]{3,})")
_MAIL_PASSWORD = re.compile(r"smtps?(?:\+(?:tls|ssl))?://[^:@/\s]+:([^@\s]+)@")


def _published_secrets() -> dict[str, set[str]]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found: dict[str, set[str]] = {}
    for name in listed.splitlines():
        if name.startswith(("tests/", "benchmarks/", "locale/")) or "/fixtures/" in name:
            continue
        try:
            text = (ROOT / name).read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        patterns = [_STRIPE_SHAPED, _MAIL_PASSWORD] + ([] if name.endswith((".py", ".ts")) else [_ASSIGNED])
        for pattern in patterns:
            for match in pattern.finditer(text):
                if set(match.group(1)) != {"."}:  # "..." is a placeholder
                    found.setdefault(match.group(1), set()).add(name)
    return found


def test_every_secret_the_repository_publishes_is_in_the_list_production_refuses() -> None:
    published = _published_secrets()

    missing = {value: sorted(files) for value, files in published.items() if value not in REPOSITORY_SECRETS}
    assert not missing, f"add these to healthcommerce.core.deploy.REPOSITORY_SECRETS: {missing}"
    assert _demo_default("STRIPE_WEBHOOK_SECRET") in published  # the scan does see scripts/demo.sh
    assert set(REPOSITORY_SECRETS) - {"insecure-dev-only-change-me"} <= set(published)  # no stale entry


def test_beside_the_demo_without_sandbox_enabled_the_refusal_says_in_one_line_what_to_do(tmp_path: Path) -> None:
    """``manage.py`` run in the demo's folder without ``SANDBOX_ENABLED=true``: production mode refuses (one line
    per setting, as always) and a last line says it looks like the demo and how to run it."""
    env = base_env(DEBUG="false", SANDBOX_ENABLED="false", FIELD_ENCRYPTION_KEYS="", HC_VAR_DIR=str(tmp_path))
    for name in ("DATABASE_URL", "EMAIL_URL", "EMAIL_BACKEND", "CELERY_BROKER_URL", "CACHE_URL"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "manage.py", "ehr_site", "list"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip

    lines = done.stderr.strip().splitlines()
    assert done.returncode == EX_CONFIG
    assert [line for line in lines if "DATABASE_URL is SQLite" in line]  # the per-setting lines stay
    assert lines[-1].startswith("healthcommerce: this looks like the demo (SQLite under var/, no DATABASE_URL")
    assert "run with SANDBOX_ENABLED=true (or DEBUG=true)" in lines[-1] and "production needs" in lines[-1]
    assert "Traceback" not in done.stderr


def test_a_production_host_with_a_wrong_setting_gets_no_demo_hint() -> None:
    done = _manage("check", **(PRODUCTION_ENV | {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}))

    assert done.returncode == EX_CONFIG and "looks like the demo" not in done.stderr
