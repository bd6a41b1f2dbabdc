"""Staff: the audit log, subscriber search, the demo world, the admin/operations API and the
console."""
