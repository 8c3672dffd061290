"""The HTTP protocol `forecaster serve` runs: uvicorn's h11 implementation with bounded request
heads.

Bodies are capped by the app (FORECASTER_MAX_BODY_BYTES), but the head of a request is read
by the server before the app sees it. httptools, uvicorn's default, buffers headers without a
limit (a 64 MB header was accepted and froze the event loop for seconds) and waits forever for
a head that arrives a byte at a time or never. Here a head larger than
FORECASTER_MAX_HEADER_BYTES is answered 431 and the connection closed, a head not complete
within FORECASTER_HEADER_TIMEOUT_SECONDS of its first byte (or of the connection, for a client
that sends nothing) gets 408 and a close, and h11 refuses malformed requests (an HTTP/1.1
request without Host included) with 400.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.settings import ServiceSettings

logger = logging.getLogger(__name__)

_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


@functools.cache
def _limits() -> tuple[int, float, float]:
    """(max header bytes, header timeout, keep-alive) from the environment, read once per
    process: the protocol is built per connection."""
    settings = ServiceSettings()
    return (settings.max_header_bytes, settings.header_timeout_seconds,
            settings.keep_alive_seconds)  # fmt: skip


class BoundedH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes, self.header_timeout, keep_alive = _limits()
        self.timeout_keep_alive = keep_alive  # type: ignore[assignment]  # call_later takes float
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_header_bytes)
        self._head_bytes = 0
        self._tail = b""  # the last bytes of the head so far: its end may straddle two reads
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # reading a head: count its bytes, not the body's
            window = self._tail + data
            ends = [i + len(m) for m in (b"\r\n\r\n", b"\n\n") if (i := window.find(m)) >= 0]
            end = min(ends, default=-1)  # h11 also takes bare LF line ends
            self._head_bytes += len(data) if end < 0 else max(0, end - len(self._tail))
            self._tail = window[-3:]
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, "request headers too large")
                return
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # the head is not complete yet
            self._arm()
        else:
            self._head_bytes, self._tail = 0, b""
            self._disarm()

    def _arm(self) -> None:
        if self._head_deadline is None and not self.transport.is_closing():
            self._head_deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._head_bytes == 0:
                self.transport.close()  # connected and never sent a byte: nothing to answer
                return
            self._refuse(408, "request headers not received in time")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with a one-line JSON detail and close, without reading further."""
        self._disarm()
        if self.transport.is_closing():
            return
        body = f'{{"detail":"{message}"}}'.encode()
        self.transport.write(
            f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()
        logger.debug("refused a request from %s: %s", self.client, message)
