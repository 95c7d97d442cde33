"""AsyncEngine: runs the synchronous LLMEngine loop on one background thread for asyncio callers.

LLMEngine is not thread-safe, so only the engine thread ever calls add/abort/step; the event loop
talks to it through a command queue and receives each request's outputs on its own asyncio queue
(`call_soon_threadsafe`). When the engine dies, or a step is stuck (watchdog.py), every waiting
request gets the error, so nothing hangs, and `dead` makes /health answer 503; with a rebuilder
the same thread then rebuilds the engine (recovery.py) and serves again.
"""

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator

from engine.loop.engine_client import EngineHealth
from engine.loop.engine_health import engine_health, refusal
from engine.loop.request_stream import RequestStream, deliver, snapshot
from engine.loop.bounded_call import bounded_call
from engine.loop.grow_back import GrowBack, GrowingBack
from engine.loop.recovery import Recovery, RecoveryConfig, rebuild
from engine.loop.recovery import sticky_device_error
from engine.loop.watchdog import StepWatchdog, WatchdogConfig, WatchdogThread, end_stuck_call
from engine.outputs import RequestOutput
from engine.sampling_params import SamplingParams
from onenode.errors import EngineDeadError

log = logging.getLogger("onenode.async_engine")

_STOP = object()


class AsyncEngine:
    """The EngineClient (engine_client.py) of one local engine.

    `rebuilder` (rebuilder.py) turns recovery on: after a failure the engine thread rebuilds the
    engine (recovery.py) instead of staying dead, and grows back from a re-planned layout
    (grow_back.py); `on_failed` is called once when the engine is dead for good. A call into the
    workers past its deadline (watchdog.py) fails the requests in flight and kills what is
    stuck."""

    def __init__(self, engine, health_interval_s: float = 1.0, rebuilder=None,
                 recovery: RecoveryConfig | None = None, on_failed=None,
                 watchdog: WatchdogConfig | None = None, exit_process=None,
                 grow_back_drain_s: float = 30.0):
        self.engine = engine
        # Model facts are fixed across rebuilds (same config), so they are read once here.
        self._tokenizer, self._max_model_len = engine.tokenizer, engine.max_model_len
        self._vocab_size = engine.model_config.vocab_size
        self._sampling_defaults = getattr(engine, "default_sampling_params", dict)()
        self.health_interval_s, self.dead = health_interval_s, None
        self.recovery = Recovery(recovery or RecoveryConfig(enabled=rebuilder is not None))
        self._rebuilder, self._on_failed, self._exit_process = rebuilder, on_failed, exit_process
        self._stopping, self.stats = threading.Event(), dict(engine.stats())
        self._commands, self._streams = queue.SimpleQueue(), {}
        self._pending_adds = 0  # queued "add" commands the engine thread has not applied yet
        # Makes "check dead, then enqueue" atomic against "mark dead, then fail the queue".
        self._lock = threading.Lock()
        self.watchdog, self._stuck = StepWatchdog(watchdog or WatchdogConfig()), None
        self._grow = GrowBack(rebuilder, grow_back_drain_s)  # from a re-planned layout
        self._thread = threading.Thread(target=self._run, name="onenode-engine", daemon=True)
        self._thread.start()
        self._monitor = WatchdogThread(self.watchdog, self._on_stuck)
        self._monitor.start()

    # ---- model facts (EngineClient) ---------------------------------------------------------
    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def default_sampling_params(self) -> dict:
        return dict(self._sampling_defaults)

    def compile_grammar(self, structured_outputs) -> None:
        engine = self.engine
        if engine is None:  # rebuilding: the request is refused like any other meanwhile
            raise self._refusal()
        engine.structured.compile(structured_outputs)

    def health(self) -> EngineHealth:
        return engine_health(self.recovery, self.alive, self.dead,
                             getattr(self._rebuilder, "degraded", None))

    def _refusal(self, reason: str | None = None) -> EngineDeadError:
        """The error a request gets while not serving; with Retry-After while it rebuilds (or
        drains to grow back)."""
        if reason is None and self.alive and self._grow.draining:
            return refusal(self._grow.refusal_text(), self.recovery.config.retry_after_s)
        return refusal(reason or self.health().message or "the engine stopped",
                       self.recovery.retry_after_s())

    # ---- event-loop side -------------------------------------------------------------------
    async def generate(self, request_id: str, prompt: str | list[int], params: SamplingParams,
                       prompt_text: str | None = None) -> AsyncIterator[RequestOutput]:
        """Yields cumulative outputs until finished; leaving early (client gone) aborts."""
        stream = RequestStream(asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            if self.dead or self._grow.draining:
                raise self._refusal()
            self._pending_adds += 1
            self._commands.put(("add", request_id, prompt, params, prompt_text, stream))
        finished = False
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            if not finished:
                self.abort(request_id)

    @property
    def num_waiting(self) -> int:
        """Requests not yet running: the scheduler's queue plus adds still on their way."""
        return self.stats.get("num_waiting", 0) + self._pending_adds

    def abort(self, request_id: str) -> None:
        self._commands.put(("abort", request_id))

    @property
    def alive(self) -> bool:
        return self.dead is None and self._thread.is_alive()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop the loop, fail waiting requests, then shut the engine (and its workers) down."""
        self._stopping.set()
        self._monitor.stop()
        self._commands.put(_STOP)
        self._thread.join(timeout_s)
        if self.engine is not None:
            self.engine.shutdown()

    # ---- engine-thread side ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            failure = self._serve()
            if failure is None:
                self._close(EngineDeadError("the server is shutting down"))
                return
            self._record(failure)  # first: /health must never read "dead" in between
            self._close(self._refusal(str(failure)))  # in flight and queued get it now
            if self.recovery.final or not self._recover():
                if self._on_failed is not None and not self._stopping.is_set():
                    self._on_failed()
                return

    def _serve(self) -> EngineDeadError | None:
        """The engine loop; returns the failure that ended it, None when asked to stop."""
        last_check = time.monotonic()
        try:
            while True:
                if not self._drain(block=not self.engine.has_unfinished_requests()):
                    return None
                if self._grow.due(busy=self.engine.has_unfinished_requests()):
                    return self._grow.failure()
                if self.engine.has_unfinished_requests():
                    self._step()
                elif time.monotonic() - last_check >= self.health_interval_s:
                    last_check = time.monotonic()
                    self._check_health()
        except BaseException as exc:
            if self._stuck:  # the watchdog killed the workers: its reason, not "rank died"
                return EngineDeadError(self._stuck)
            log.error("engine loop died: %s", exc, exc_info=not isinstance(exc, EngineDeadError))
            return exc if isinstance(exc, EngineDeadError) else EngineDeadError(str(exc))

    def _record(self, failure: EngineDeadError) -> None:
        if isinstance(failure, GrowingBack):
            self.recovery.grow_back(str(failure))
        elif self.recovery.serving:
            self.recovery.fail(str(failure))
        if sticky_device_error(str(failure)) and getattr(self.engine, "backend", "") == "uni":
            self.recovery.give_up(f"{failure} (a device error poisons this process's device "
                                  f"context: exiting so a new process serves)")

    def _recover(self) -> bool:
        """Rebuild the engine (recovery.py); True once it serves again."""
        if not self.recovery.config.enabled or self._rebuilder is None:
            return False
        old, self.engine = self.engine, None
        try:
            old.shutdown()  # kill what is left of the old workers and free their devices
        except Exception as exc:  # noqa: BLE001 - half-dead workers may fail to stop cleanly
            log.warning("stopping the old workers failed (%s); rebuilding anyway", exc)
        build, abandoned = self._rebuilder.build, lambda late: late.shutdown()
        engine = rebuild(self.recovery, self._rebuilder.wait_for_devices,
                         lambda t: bounded_call(build, t, "rebuild attempt", abandoned),
                         self._stopping.is_set, sleep=self._stopping.wait)
        if engine is None:
            return False
        if self._stopping.is_set():
            engine.shutdown()
            return False
        self.engine, self.stats = engine, dict(engine.stats())
        with self._lock:
            self.dead, self._stuck = None, None
        return True

    def _drain(self, block: bool) -> bool:
        """Apply queued commands; returns False on stop. Idle: wait for work or a health tick."""
        while True:
            try:
                cmd = self._commands.get(timeout=self.health_interval_s) if block \
                    else self._commands.get_nowait()
            except queue.Empty:
                return True
            block = False
            if cmd is _STOP:
                return False
            if cmd[0] == "add":
                self._add(*cmd[1:])
            else:
                self._streams.pop(cmd[1], None)
                self.engine.abort_request(cmd[1])
                self.stats = dict(self.engine.stats())

    def _add(self, request_id, prompt, params, prompt_text, stream: RequestStream) -> None:
        try:
            self.engine.add_request(request_id, prompt, params, prompt_text=prompt_text)
            self._streams[request_id] = stream
            self.stats = dict(self.engine.stats())
        except Exception as exc:  # noqa: BLE001 - a bad request must not kill the loop
            stream.put(exc)
        finally:
            with self._lock:  # counted in the scheduler's queue from here on
                self._pending_adds -= 1

    def _step(self) -> None:
        engine = self.engine
        self.watchdog.begin("step", lambda: getattr(engine, "step_tokens", 0))
        try:
            outputs = engine.step()
        finally:
            self.watchdog.end()
        self.stats = dict(self.engine.stats())
        # One wake-up of each event loop per step, not one per request: at 32 streams the
        # per-call cross-thread overhead is a visible share of a small model's step time.
        batches: dict[asyncio.AbstractEventLoop, list] = {}
        for out in outputs:
            stream = self._streams.get(out.request_id)
            if stream is None:
                continue
            if out.finished:
                del self._streams[out.request_id]
            batches.setdefault(stream.loop, []).append((stream.queue, out))
        for loop, items in batches.items():
            try:
                loop.call_soon_threadsafe(deliver, items)
            except RuntimeError:  # that loop is closed: nobody is listening any more
                pass

    def _check_health(self) -> None:
        self.watchdog.begin("health check")
        try:
            self.engine.check_health()
        finally:
            self.watchdog.end()

    def _on_stuck(self, reason: str) -> None:
        """The watchdog's thread: the engine thread is blocked in a call that will not return.
        Tell /health and the requests in flight now, then end the stuck call."""
        with self._lock:
            self.dead, self._stuck = reason, reason
        if self.recovery.serving:
            self.recovery.fail(reason)
        exc = self._refusal(reason)
        for stream in snapshot(self._streams):
            stream.put(exc)
        end_stuck_call(self.engine, reason, self._exit_process)

    def _close(self, exc: EngineDeadError) -> None:
        with self._lock:
            self.dead = str(exc) or type(exc).__name__
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.put(exc)
        # Requests queued before `dead` was set would otherwise wait forever.
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            if cmd is not _STOP and cmd[0] == "add":
                cmd[-1].put(exc)
                with self._lock:  # never applied: no longer on its way to the scheduler
                    self._pending_adds -= 1

