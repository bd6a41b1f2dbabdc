"""Adapters: the database, protection of personal data, SMS channels, QR images."""
