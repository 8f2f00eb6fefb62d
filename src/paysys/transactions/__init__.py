"""Transactions service: the saga that moves money (deposits, transfers, payments)."""
