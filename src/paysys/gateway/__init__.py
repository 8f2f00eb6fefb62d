"""API gateway: the public edge (routing, JWT check, rate limits, request ids)."""
