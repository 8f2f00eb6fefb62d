"""Reading what paysys mailed, from Mailpit's HTTP API (the stack's `MAIL_INBOX`): for
the tests and the chaos run. Summaries carry each message's recipients, Message-ID and
arrival time; the raw text is one more request per message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

PAGE = 1000
_client = httpx.Client(timeout=30)


def summaries(inbox: str, query: str = "", since: float = 0.0) -> list[dict[str, Any]]:
    """Every message matching Mailpit's search `query` (all of them when empty) that
    arrived at or after `since` (unix seconds), newest first."""
    found: list[dict[str, Any]] = []
    start = 0
    while True:
        if query:
            params: dict[str, str | int] = {"query": query, "start": start, "limit": PAGE}
            resp = _client.get(f"{inbox}/api/v1/search", params=params)
        else:
            resp = _client.get(f"{inbox}/api/v1/messages", params={"start": start, "limit": PAGE})
        resp.raise_for_status()
        page = resp.json()["messages"]
        for m in page:
            if arrived(m) < since:
                return found  # newest first: the rest is older still
            found.append(m)
        if len(page) < PAGE:
            return found
        start += PAGE


def clear(inbox: str) -> None:
    """Deletes every message Mailpit holds (its cost per message grows with them)."""
    _client.delete(f"{inbox}/api/v1/messages", timeout=300).raise_for_status()


def arrived(summary: dict[str, Any]) -> float:
    return datetime.fromisoformat(summary["Created"].replace("Z", "+00:00")).timestamp()


def recipients(summary: dict[str, Any]) -> list[str]:
    return [str(a.get("Address", "")).lower() for a in summary.get("To") or []]


def raw(inbox: str, message_id: str) -> bytes:
    resp = _client.get(f"{inbox}/api/v1/message/{message_id}/raw")
    resp.raise_for_status()
    return resp.content


def to(inbox: str, address: str, since: float = 0.0) -> list[bytes]:
    """The raw text of every message to exactly `address`, oldest first."""
    address = address.lower()
    hits = summaries(inbox, f'to:"{address}"', since)
    return [raw(inbox, m["ID"]) for m in reversed(hits) if address in recipients(m)]
