"""`make bench` runs: a few seconds of the benchmark, checked for its figures (never for
their values: no timing assertion belongs in the tests)."""

from __future__ import annotations

import subprocess
import sys

from paysys_dev.stack import ROOT
from tests.conftest import Infra


def test_the_benchmark_runs_and_reports_every_figure(infra: Infra) -> None:
    proc = subprocess.run(
        [sys.executable, "bench/load.py", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for figure in (
        "| transfer |",
        "| deposit |",
        "| payment |",
        "transactions/s",
        "CPU ms per transfer",
        "| postgresql |",
        "| load generator |",
        "Peak resident memory",
        "event tail",
        "| balance?at= (10,000 entries) |",
        "| statement, one month, JSON (10,000 entries) |",
    ):
        assert figure in out, figure
    transfer_row = next(line for line in out.splitlines() if line.startswith("| transfer |"))
    answers = dict(
        part.strip().split(": ") for part in transfer_row.split("|")[-2].split(",") if part.strip()
    )
    assert int(answers.get("201", 0)) > 0  # transfers went through
    assert not [code for code in answers if code.startswith("5")]  # and no server errors
