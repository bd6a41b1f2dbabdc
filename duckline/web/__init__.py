"""The HTTP face of Duckline: the versioned API (and, later, the portal)."""
