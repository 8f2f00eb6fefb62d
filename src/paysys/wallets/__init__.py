"""Wallets service: wallets, balances and the append-only ledger."""
