"""Request and response models of the notifications service's webhooks API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from paysys.kit.text import Input


class WebhookIn(Input):
    url: str = Field(min_length=1, max_length=2048)
    # Topic names from the contract's Events section; default: all of them.
    events: list[str] | None = Field(default=None, min_length=1, max_length=20)


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    status: Literal["enabled"]
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str  # shown in this answer only


class WebhookList(BaseModel):
    items: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
