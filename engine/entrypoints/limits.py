"""What one request may ask of the server (ServerConfig's limits), checked before any work.

`BodyLimit` is ASGI middleware: a body over the cap is a 413 before it is buffered (by its
Content-Length, or by counting a chunked body). The other checks run on parsed requests and name
the flag that raises the limit.
"""

import json

from engine.entrypoints.errors import ApiError, error_body

RETRY_AFTER_S = 1


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send)
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send) -> None:
        body = json.dumps(error_body(
            413, f"the request body is larger than {self.max_bytes} bytes; send less (fewer or "
                 f"shorter prompts) or raise --max-request-body-bytes",
            code="request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def check_count(what: str, count: int, limit: int, flag: str, param: str) -> None:
    if count > limit:
        raise ApiError(400, f"this request has {count} {what}; the limit is {limit} (raise "
                            f"{flag} on the server, or split the request)", param=param,
                       code="limit_exceeded")


def check_queue(waiting: int, adding: int, limit: int) -> None:
    """503 + Retry-After when `adding` more engine requests would overfill the waiting queue."""
    check_count("prompts", adding, limit, "--max-waiting-requests", "prompt")
    if waiting + adding > limit:
        raise ApiError(503, f"the server is busy: {waiting} requests are waiting (limit {limit}, "
                            f"--max-waiting-requests); retry in {RETRY_AFTER_S}s",
                       code="server_busy", headers={"Retry-After": str(RETRY_AFTER_S)})
