"""Support tickets, reconciliation cases and the support desk."""
