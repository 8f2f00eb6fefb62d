"""The test-only SMTP relay (tests/support/smtp_fault, Go): built when its source is
newer than the binary, started on a port of the caller's, relaying to Mailpit."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paysys_dev.stack import ROOT
from tests.support.processes import wait_listening

SOURCE = Path(__file__).parent / "smtp_fault"
BINARY = ROOT / ".run" / "bin" / "smtp-fault"


def build() -> Path:
    newest = max(p.stat().st_mtime for p in SOURCE.iterdir())
    if not BINARY.exists() or BINARY.stat().st_mtime < newest:
        BINARY.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-o", str(BINARY), "."], cwd=SOURCE, check=True)
    return BINARY


@contextmanager
def smtp_relay(
    port: int, control: Path, upstream: str, tls: tuple[Path, Path] | None = None
) -> Iterator[None]:
    """Runs while the block does: SMTP on 127.0.0.1:`port`, switch files in `control`;
    with `tls` (certificate, key), it offers STARTTLS."""
    args = [str(build()), "-port", str(port), "-control", str(control), "-upstream", upstream]
    if tls is not None:
        args += ["-tls-cert", str(tls[0]), "-tls-key", str(tls[1])]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc, "the test SMTP relay")
        yield
    finally:
        proc.terminate()
        proc.wait(10)
