"""Payment-gateway service: a card processor simulator with test cards."""
