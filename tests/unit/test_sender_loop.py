"""The senders' loop (notifications.tasks.poll): a pause only when a round found
nothing, and a wake-up that ends the pause at once, so that the next delivery to an
endpoint goes as soon as the one before it is recorded, not a poll interval later."""

from __future__ import annotations

import asyncio
import contextlib

from paysys.notifications.tasks import poll


async def test_a_wake_up_ends_the_idle_pause_at_once() -> None:
    rounds: list[float] = []
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    async def run_once() -> int:
        rounds.append(loop.time())
        return 0  # nothing to do: the loop pauses for an hour, unless woken

    task = asyncio.create_task(poll(run_once, 3600, "test_sender_error", wake))
    try:
        while not rounds:
            await asyncio.sleep(0)
        wake.set()
        async with asyncio.timeout(5):
            while len(rounds) < 2:
                await asyncio.sleep(0.01)
        assert not wake.is_set(), "the wake-up is taken, so the next pause is a pause"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_without_a_wake_up_an_idle_loop_waits_and_a_busy_one_does_not() -> None:
    calls = 0

    async def run_once() -> int:
        nonlocal calls
        calls += 1
        return 1 if calls < 5 else 0  # four rounds with work, then none

    task = asyncio.create_task(poll(run_once, 3600, "test_sender_error"))
    try:
        for _ in range(100):
            await asyncio.sleep(0)
        assert calls == 5  # the busy rounds ran back to back, then it paused
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
