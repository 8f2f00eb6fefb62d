"""A short `make chaos` with its fixed seed: a few hundred operations while four of the
processes are SIGKILLed and restarted, then every invariant checked (0 violations)."""

from __future__ import annotations

import subprocess
import sys

from paysys.cli import ROOT
from tests.conftest import Infra


def test_a_short_seeded_chaos_run_keeps_every_invariant(infra: Infra) -> None:
    proc = subprocess.run(
        [sys.executable, "bench/chaos.py", "--smoke"],
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
    assert ", 0 violations" in out
