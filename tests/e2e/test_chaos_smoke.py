"""A short `make chaos` with its fixed seed: a few hundred operations while four of the
processes are SIGKILLed and restarted, then every invariant checked (0 violations).
Once with one instance of each service (a killed process is replaced by its warm
spare), and once with two behind HAProxy (an instance of transactions, then one of
wallets killed, then every instance of wallets at once): the relays of both instances
share the outbox and each wallet's events must still reach Kafka in commit order."""

from __future__ import annotations

import subprocess
import sys

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
