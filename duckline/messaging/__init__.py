"""Domain events and what goes out: notifications, reminders, outgoing webhooks; SMS and
email channels."""
