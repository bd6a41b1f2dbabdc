"""Lines: numbers, eSIM profiles, the line lifecycle and line care (features, lost phones)."""
