"""``manage.py check --deploy`` refuses Stripe settings that cannot work (purchaselinks/checks.py)."""

from typing import Any

from healthcommerce.purchaselinks.checks import stripe_check


def ids() -> list[str]:
    return [message.id for message in stripe_check()]


def configure(settings: Any, **overrides: str) -> None:
    values = {
        "STRIPE_SECRET_KEY": "sk_live_51AbC",
        "STRIPE_PUBLISHABLE_KEY": "pk_live_51AbC",
        "STRIPE_WEBHOOK_SECRET": "whsec_abc",
        "STRIPE_API_BASE": "",
        "STRIPE_JS_URL": "https://js.stripe.com/v3/",
    }
    for name, value in (values | overrides).items():
        setattr(settings, name, value)


def test_payments_off_need_nothing(settings: Any) -> None:
    configure(settings, STRIPE_SECRET_KEY="", STRIPE_PUBLISHABLE_KEY="", STRIPE_WEBHOOK_SECRET="")
    assert ids() == []


def test_complete_settings_pass_and_localstripe_on_loopback_is_allowed(settings: Any) -> None:
    configure(settings)
    assert ids() == []
    configure(
        settings, STRIPE_API_BASE="http://127.0.0.1:8420", STRIPE_JS_URL="http://127.0.0.1:8420/js.stripe.com/v3/"
    )
    assert ids() == []


def test_a_plain_http_api_base_or_stripe_js_elsewhere_fails(settings: Any) -> None:
    configure(settings, STRIPE_API_BASE="http://stripe.internal", STRIPE_JS_URL="http://cdn.example/v3/")
    assert ids() == ["healthcommerce.E111", "healthcommerce.E111"]


def test_a_wrong_key_or_a_missing_webhook_secret_fails_without_echoing_them(settings: Any) -> None:
    configure(settings, STRIPE_SECRET_KEY="pk_live_oops_public", STRIPE_WEBHOOK_SECRET="")
    messages = stripe_check()
    assert [m.id for m in messages] == ["healthcommerce.E112", "healthcommerce.E113"]
    assert all("oops" not in m.msg for m in messages)
    configure(settings, STRIPE_PUBLISHABLE_KEY="")
    assert ids() == ["healthcommerce.E113"]
