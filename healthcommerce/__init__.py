"""healthcommerce: SMART on FHIR EHR launch -> pre-filled order -> sign-off -> minimized fulfillment."""

from healthcommerce.celery import app as celery_app

__all__ = ["celery_app"]
