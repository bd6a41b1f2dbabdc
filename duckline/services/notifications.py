"""Queue messages in the outbox, in the caller's transaction; deliver them after commit."""

from __future__ import annotations

import logging

from sqlalchemy import select

from duckline import i18n
from duckline.adapters.db.engine import Database
from duckline.adapters.db.tables import Notification
from duckline.adapters.sms import SmsChannel
from duckline.clock import Clock
from duckline.services.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

# Message ids are the English text; translations live in the gettext catalogues.
TEMPLATES = {
    "otp": "Your Duckline verification code is {code}. It expires in {minutes} minutes. Never share it with anyone.",
}


def queue_sms(uow: UnitOfWork, to: str, template: str, language: str, **params: object) -> Notification:
    body = i18n.gettext(language, TEMPLATES[template]).format(**params)
    notification = Notification(
        channel="sms",
        recipient=to,
        template=template,
        language=language,
        body=body,
        status="queued",
        created_at=uow.now(),
    )
    uow.session.add(notification)
    uow.queued_notifications += 1
    return notification


def deliver_queued(db: Database, sms: SmsChannel, clock: Clock, limit: int = 100) -> int:
    """Send what is queued, one transaction per message so a failure cannot resend the others.

    A stand-in until the notification worker (with retries and row locks) takes this over.
    """
    sent = 0
    with db.transaction() as session:
        ids = session.scalars(
            select(Notification.id).where(Notification.status == "queued").order_by(Notification.id).limit(limit)
        ).all()
    for notification_id in ids:
        with db.transaction() as session:
            row = session.get(Notification, notification_id, with_for_update=True)
            if row is None or row.status != "queued":
                continue
            try:
                sms.send(row.recipient, row.body)
                row.status, row.sent_at = "sent", clock.now()
                sent += 1
            except Exception:
                log.exception("sending notification %s failed", notification_id)
                row.status = "failed"
    return sent
