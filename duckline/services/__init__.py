"""Use cases. Each takes a UnitOfWork, may flush, never commits: the caller owns the transaction."""
