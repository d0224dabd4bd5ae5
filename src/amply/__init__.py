"""Amply: transparent donations and wallets on an append-only, hash-chained ledger."""

__version__ = "0.1.0"
