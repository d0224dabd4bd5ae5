"""Wallets: balances, transfers and their risk rules, money requests, cards, deposits,
withdrawals and giving."""
