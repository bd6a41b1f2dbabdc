"""Usage: ingest from network elements, balances, history and online charging (quota)."""
