"""A short `make chaos` with its fixed seed: a few hundred operations while four of the
processes are SIGKILLed and restarted, then every invariant checked (0 violations).
Once with one instance of each service (a killed process is replaced by its warm
spare), and once with two behind HAProxy (an instance of transactions, then one of
wallets killed, then every instance of wallets at once): the relays of both instances
share the outbox and each wallet's events must still reach Kafka in commit order."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from paysys_dev.stack import ROOT
from tests.conftest import Infra


@pytest.mark.parametrize("instances", [1, 2])
def test_a_short_seeded_chaos_run_keeps_every_invariant(infra: Infra, instances: int) -> None:
    proc = subprocess.run(
        [sys.executable, "bench/chaos.py", "--smoke", "--instances", str(instances)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stdout
    assert "chaos seed" in out
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-3000:]
    assert "| money conserved" in out
    assert "| no card number or CVC in PostgreSQL, MongoDB, Kafka or any log | 0 |" in out
    assert "| each wallet's events in commit order on Kafka" in out
    assert ", 0 violations" in out
    if instances > 1:
        assert "| killall:wallets |" in out


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_chaos_run_ended_by_sigterm_stops_the_processes_it_started(infra: Infra) -> None:
    # Left running, they kept consuming the run's topics: a later run counted their
    # emails as duplicates of its own.
    proc = subprocess.Popen(
        [sys.executable, "bench/chaos.py", "--smoke"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("chaos phase start"):
                break
        started = _children(proc.pid)
        assert len(started) >= 6, started  # the six, and the spares
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
        assert [p for p in started if _alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
