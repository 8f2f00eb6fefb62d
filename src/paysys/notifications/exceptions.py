"""Domain errors of the notifications service (its webhooks API)."""

from __future__ import annotations

from paysys.kit.errors import AppError


class WebhookNotFound(AppError):
    status = 404
    code = "WEBHOOK_NOT_FOUND"


class DeliveryNotFound(AppError):
    status = 404
    code = "DELIVERY_NOT_FOUND"


class TooManyWebhooks(AppError):
    status = 422
    code = "TOO_MANY_WEBHOOKS"


class UrlRefused(AppError):
    status = 422
    code = "URL_NOT_ALLOWED"
