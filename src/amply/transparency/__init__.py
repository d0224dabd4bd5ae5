"""The public API: organisations, ledgers, checkpoints and receipts anyone may read."""
