"""Long commands run beside the suite instead of inside its timeline: started once the
infrastructure is up, one after another in a thread, while the other tests run; the
tests that check them run after the rest (tests/conftest.py orders them) and read their
output. The chaos smoke runs use stacks of their own, so nothing of the suite's state
is shared; they took a fifth of `make test`'s time when run in line."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path


class Beside:
    def __init__(self, commands: Mapping[str, Sequence[str]], cwd: Path, timeout: float) -> None:
        self.commands = dict(commands)
        self.cwd, self.timeout = cwd, timeout
        self.results: dict[str, subprocess.CompletedProcess[str]] = {}
        self._done = {key: threading.Event() for key in self.commands}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="beside", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        for key, command in self.commands.items():
            try:
                self.results[key] = subprocess.run(
                    list(command),
                    cwd=self.cwd,
                    capture_output=True,
                    text=True,
                    timeout=self.timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
                self.results[key] = subprocess.CompletedProcess(command, -1, out, "timed out")
            finally:
                self._done[key].set()

    def result(self, key: str) -> subprocess.CompletedProcess[str]:
        """The command's outcome, once it has run (started now if it was not)."""
        self.start()
        assert self._done[key].wait(self.timeout * len(self.commands)), f"{key}: never ended"
        return self.results[key]
