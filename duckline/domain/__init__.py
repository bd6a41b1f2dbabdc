"""Pure domain logic: no HTTP, no SQL, no clocks of its own."""
