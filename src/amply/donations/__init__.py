"""Donations: checkout, refunds, disputes and receipts."""
