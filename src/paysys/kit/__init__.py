"""Shared kernel used by every paysys service: no business rules live here."""
