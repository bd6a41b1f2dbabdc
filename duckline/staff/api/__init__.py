"""The staff API: admin (number pool, identity reviews, audit log) and operations."""
