"""The accounts API: auth, registration, password, me, settings, security, privacy."""
