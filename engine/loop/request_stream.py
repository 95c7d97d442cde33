"""One request's output channel from the engine thread to the asyncio caller that awaits it.

The engine thread (and the watchdog's thread, when a step is stuck) put outputs or errors; the
caller's event loop receives them on its own asyncio queue, woken with `call_soon_threadsafe`.
"""

import asyncio
from dataclasses import dataclass


@dataclass
class RequestStream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue

    def put(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the caller's loop is closed: nobody is listening any more
            pass


def deliver(items) -> None:
    """Runs on the caller's loop: one wake-up for a whole step's outputs."""
    for q, out in items:
        q.put_nowait(out)


def snapshot(streams: dict) -> list:
    """The streams, read from another thread than the one that changes the dict."""
    for _ in range(100):
        try:
            return list(streams.values())
        except RuntimeError:  # changed size during the copy: try again
            continue
    return []
