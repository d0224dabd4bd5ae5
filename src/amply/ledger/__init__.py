"""The ledger: appends, chains, checkpoints, exports and signing."""
