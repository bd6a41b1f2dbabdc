"""Quotes, orders, checkout, payments, fulfilment, receipts, refunds, reconciliation,
auto-renewal and the payment providers."""
