"""Users service: registration, login, tokens and sessions."""
