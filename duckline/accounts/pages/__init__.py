"""The portal's account, security and privacy pages."""
