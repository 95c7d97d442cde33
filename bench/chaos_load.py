"""Streaming load and a /health watcher for the chaos bench and its Docker tests.

`Load` keeps N streaming completions in flight against a served cluster and records how each
ended: ok, an error event in the stream, an HTTP error (with its Retry-After), a refused
connection, or hung (no byte for `read_timeout_s`: the "never hang" line is crossed).
`HealthWatch` samples /health twice a second, so a fault's detection and recovery times and what
/health said meanwhile can be read afterwards. Only loopback is ever contacted.
"""

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field

PROMPT = "Count: 1, 2, 3,"


@dataclass
class Outcome:
    started: float
    ended: float
    kind: str  # ok | stream_error | http_<status> | connection | hung
    detail: str = ""
    retry_after: str | None = None


def one_request(port: int, max_tokens: int, read_timeout_s: float) -> tuple[str, str, str | None]:
    """(kind, detail, Retry-After) of one streaming completion."""
    body = json.dumps({"model": "smol", "prompt": PROMPT, "max_tokens": max_tokens,
                       "stream": True, "temperature": 0, "ignore_eos": True})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=read_timeout_s)
    try:
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            return f"http_{resp.status}", resp.read()[:300].decode(errors="replace"), \
                resp.getheader("Retry-After")
        for line in resp:
            if line.startswith(b"data: [DONE]"):
                return "ok", "", None
            if line.startswith(b"data: ") and b'"error"' in line[:20]:
                return "stream_error", line[6:306].decode(errors="replace").strip(), None
        return "stream_error", "the stream ended without [DONE]", None
    except (socket.timeout, TimeoutError):
        return "hung", f"no byte for {read_timeout_s:.0f}s", None
    except OSError as exc:
        return "connection", f"{type(exc).__name__}: {exc}", None
    finally:
        conn.close()


@dataclass
class Load:
    port: int
    clients: int = 4
    max_tokens: int = 48
    read_timeout_s: float = 45.0
    outcomes: list = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True, name=f"load-{i}")
                         for i in range(self.clients)]

    def start(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout_s: float = 120.0) -> list[Outcome]:
        """Stop issuing; the requests in flight end by themselves (bounded by the read timeout)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout_s)
        return list(self.outcomes)

    def _client(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            kind, detail, retry = one_request(self.port, self.max_tokens, self.read_timeout_s)
            self.outcomes.append(Outcome(start, time.monotonic(), kind, detail, retry))
            if kind != "ok":  # refused or failed: back off as a polite client would
                self._stop.wait(min(float(retry or 1), 2.0))


def health(port: int) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        raw = resp.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"raw": raw[:200].decode(errors="replace")}
        return resp.status, {**body, "retry_after": resp.getheader("Retry-After")}
    except OSError:
        return 0, {}
    finally:
        conn.close()


class HealthWatch:
    """Samples /health every `every_s` seconds on a thread: (time, status, body)."""

    def __init__(self, port: int, every_s: float = 0.5):
        self.port, self.every_s, self.samples = port, every_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="health-watch")

    def start(self) -> "HealthWatch":
        self._thread.start()
        return self

    def stop(self) -> list:
        self._stop.set()
        self._thread.join(10)
        return self.samples

    def _run(self) -> None:
        while not self._stop.is_set():
            code, body = health(self.port)
            self.samples.append((time.monotonic(), code, body))
            self._stop.wait(self.every_s)


def wait_health(port: int, ok, timeout_s: float, what: str) -> float:
    """Seconds until `ok(status, body)`; AssertionError naming `what` past the timeout."""
    start = time.monotonic()
    while True:
        code, body = health(port)
        if ok(code, body):
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"/health not {what} within {timeout_s:.0f}s: {code} {body}")
        time.sleep(0.5)


def serving_full(code: int, body: dict) -> bool:
    return code == 200 and not body.get("degraded")


def serving_degraded(code: int, body: dict) -> bool:
    return code == 200 and bool(body.get("degraded"))
