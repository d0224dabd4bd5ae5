"""The Stripe boundary: the payment gateway, Connect accounts, payouts, reads and reconciliation."""
