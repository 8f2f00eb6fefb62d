"""paysys: a digital-wallet payment backend."""
