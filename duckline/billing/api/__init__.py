"""The billing API: orders, bills (receipts, refunds, reports) and the providers' webhooks."""
