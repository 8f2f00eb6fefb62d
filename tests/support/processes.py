"""Waiting for a helper process of a test's own (a relay, a pooler) to listen."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


def wait_listening(
    port: int,
    proc: subprocess.Popen[bytes],
    what: str,
    why: Callable[[], str] = lambda: "",
    timeout: float = 20,
) -> None:
    """Returns once 127.0.0.1:`port` takes connections; raises if `proc` exits first or
    `timeout` passes, with `why()` (its log, say) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start. {why()}") from None
            time.sleep(0.1)
