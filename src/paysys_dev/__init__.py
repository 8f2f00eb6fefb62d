"""Developer tooling: the local stack. Not shipped with the product."""
