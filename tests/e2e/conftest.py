"""Fixtures of the end-to-end tests beyond the stack's (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.receiver import Receiver, serve_receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on a free port, for the test's duration."""
    async with serve_receiver() as rec:
        yield rec
