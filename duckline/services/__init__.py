"""Use cases. A step takes a UnitOfWork, may flush, never commits: its caller owns the transaction.
A flow (what one route or page does) takes `Transactions`, the unit-of-work factory, and holds
its whole transaction choreography, returning rows or values that need no session afterwards."""
