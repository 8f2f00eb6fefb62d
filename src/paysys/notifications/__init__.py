"""Notifications service: consumes events and sends email."""
