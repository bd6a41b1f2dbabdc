"""Accounts and real-name identity: registration, login and tokens, one-time codes, security,
contact changes, identity documents, closure and personal-data export."""
