"""uvicorn's httptools protocol with bounds on the request head: its size and how long
it may take to arrive.

Written here because neither exists in uvicorn with httptools (h11 has a size bound
only, and is slower), and llhttp buffers a header of any size: 4 MiB of headers were
held in memory, and a client sending its head a byte at a time held its connection
for ever. A head over the size gets 431 and the connection is closed; one not complete
in time is closed without a word. Behind HAProxy (`timeout http-request`, its buffer
size) these bounds are its too; a lone process has only these."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from paysys.kit.errors import problem_bytes

_431 = problem_bytes(
    431, "REQUEST_HEADER_FIELDS_TOO_LARGE", "The request's header section is too large."
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 64 * 1024
    head_timeout_seconds = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Still inside a head after this read: count it (a head that ended within
            # the read is not counted, so a body in the same read is never mistaken).
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self.transport.write(_431)
                self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a kept-alive connection
            self._in_head = True
            self._head_bytes = 0
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)


def bounded_protocol(max_head_bytes: int, head_timeout_seconds: float) -> type[HttpToolsProtocol]:
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes, "head_timeout_seconds": head_timeout_seconds},
    )
