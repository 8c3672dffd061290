"""Pure ASGI middleware (cheaper per request than BaseHTTPMiddleware): request ids, a body size
limit, and Prometheus request counts and latencies by route template."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import ServiceMetrics


def route_template(scope: Scope) -> str:
    """The matched route's full path template ('/v1/predictions'), or 'unmatched'.

    Newer FastAPI versions leave the route of a nested router in the scope with its own path
    only ('/predictions'), so the routers' prefixes are recovered from the request path: the
    longest leading part after which the route's own pattern matches the rest.
    """
    route = scope.get("route")
    own = getattr(route, "path", None)
    pattern = getattr(route, "path_regex", None)
    if own is None or pattern is None:
        return "unmatched"
    path: str = scope.get("path", "")
    for cut in (i for i, char in enumerate(path) if char == "/"):
        if pattern.match(path[cut:]):
            return path[:cut] + str(own)
    return str(own)


class _BodyTooLargeError(Exception):
    pass


async def _send_json(send: Send, status: int, payload: dict[str, Any], request_id: str) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the buffered body once, then defers to the real one (which
    reports the client disconnecting)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        method = scope["method"]

        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._too_large(send, scope, method, start, request_id)
            return
        if length is None and b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            # No declared size: read the body here, up to the limit, so a large one is a 413
            # before any handler sees it (not a parse error half-way through).
            body = await self._read_limited(receive)
            if body is None:
                await self._too_large(send, scope, method, start, request_id)
                return
            receive = _replay(body, receive)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLargeError
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLargeError:
            status = 413
            await _send_json(send, 413, self._too_large_detail(), request_id)
        finally:
            self._observe(scope, method, status, start)

    def _too_large_detail(self) -> dict[str, Any]:
        return {"detail": f"request body over {self.max_body} bytes"}

    async def _too_large(
        self, send: Send, scope: Scope, method: str, start: float, request_id: str
    ) -> None:
        await _send_json(send, 413, self._too_large_detail(), request_id)
        self._observe(scope, method, 413, start)

    async def _read_limited(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # client went away: let the app see an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _observe(self, scope: Scope, method: str, status: int, start: float) -> None:
        template = route_template(scope)
        self.metrics.requests.labels(template, method, str(status)).inc()
        self.metrics.latency.labels(template, method).observe(time.perf_counter() - start)
