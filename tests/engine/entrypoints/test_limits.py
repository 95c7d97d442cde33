"""BodyLimit on a bare ASGI app: 413 by Content-Length and for a chunked body, in one line."""

import asyncio

import pytest

from engine.entrypoints.errors import ApiError
from engine.entrypoints.limits import BodyLimit, check_count, check_queue


async def _echo_len(scope, receive, send):
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def _call(app, headers, chunks):
    sent, queue = [], list(chunks)

    async def receive():
        body = queue.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(queue)}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "headers": headers}, receive, send))
    return sent[0]["status"], sent[-1]["body"]


def test_body_over_the_cap_is_413_by_header_or_by_counting():
    app = BodyLimit(_echo_len, max_bytes=10)
    assert _call(app, [], [b"12345"]) == (200, b"5")
    status, body = _call(app, [(b"content-length", b"11")], [b"x" * 11])
    assert status == 413 and b"--max-request-body-bytes" in body
    assert _call(app, [], [b"123456", b"123456"])[0] == 413


def test_counts_and_queue_limits_name_the_flag():
    with pytest.raises(ApiError) as err:
        check_count("prompts", 5000, 1024, "--max-prompts-per-request", "prompt")
    assert err.value.status == 400 and "--max-prompts-per-request" in err.value.message
    with pytest.raises(ApiError) as err:
        check_queue(waiting=10, adding=1, limit=10)
    assert err.value.status == 503 and err.value.headers == {"Retry-After": "1"}
    check_queue(waiting=9, adding=1, limit=10)
