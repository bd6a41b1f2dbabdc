"""Where an outgoing message stands: a notification to a subscriber, an event to an integrator."""

from __future__ import annotations

from enum import StrEnum


class NotificationStatus(StrEnum):
    QUEUED = "queued"  # waiting for its next attempt
    SENDING = "sending"  # claimed by a worker, under a lease
    SENT = "sent"
    FAILED = "failed"  # for good
    EXPIRED = "expired"  # no longer worth sending (its code no longer works)


class WebhookDeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    SENDING = "sending"  # claimed by a worker, under a lease
    DELIVERED = "delivered"
    FAILED = "failed"  # out of attempts; staff can redeliver it
