"""The plan catalogue and promotions."""
