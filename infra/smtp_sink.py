"""Local SMTP sink: accepts every message and keeps it as one .eml file in a folder.

aiosmtpd does the SMTP; this only chooses where messages land, so tests (and people)
can read what the notifications service really sent over the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop
from aiosmtpd.controller import Controller


class MaildirHandler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fail_flag = folder / ".fail"  # present: answer 451, to test retries
        # one address per line: refused (451) at RCPT, to test per-message failures
        self.fail_rcpt = folder / ".fail-rcpt"
        # one address per line: refused for good (550) at RCPT, to test permanent failures
        self.bounce_rcpt = folder / ".bounce-rcpt"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.fail_rcpt.exists() and address in self.fail_rcpt.read_text().split():
            return "451 4.2.0 mailbox temporarily unavailable"
        if self.bounce_rcpt.exists() and address in self.bounce_rcpt.read_text().split():
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail_flag.exists():
            return "451 4.3.0 sink told to fail"
        name = f"{time.time_ns()}-{uuid.uuid4().hex}.eml"
        tmp = self.folder / f".{name}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        os.replace(tmp, self.folder / name)  # atomic: a reader never sees half a message
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11025)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args()
    args.maildir.mkdir(parents=True, exist_ok=True)
    # aiosmtpd serves on its own thread's loop: uvloop there costs less CPU per message
    # (the sink takes a share of the machine in `make bench`).
    controller = Controller(
        MaildirHandler(args.maildir),
        hostname=args.host,
        port=args.port,
        loop=uvloop.new_event_loop(),
    )
    controller.start()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
