"""Run a call that may hang (a rebuild: loading weights, starting workers, a first step) with a
deadline. Python cannot kill a thread, so a call past its deadline is abandoned: it raises
TimeoutError here, the thread runs on as a daemon, and whatever it returns later is handed to
`on_late` (e.g. shut a late engine down) instead of leaking."""

import threading
from collections.abc import Callable


def bounded_call(fn: Callable[[], object], timeout_s: float, what: str,
                 on_late: Callable[[object], None] = lambda result: None):
    box: dict = {}
    lock = threading.Lock()
    done = threading.Event()

    def run():
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc
            result = None
        with lock:
            box["result"] = result
            abandoned = box.get("abandoned", False)
        done.set()
        if abandoned and result is not None:
            on_late(result)

    threading.Thread(target=run, name=f"onenode-{what.replace(' ', '-')}", daemon=True).start()
    finished = done.wait(timeout_s)
    with lock:
        if not finished and "result" not in box:
            box["abandoned"] = True
            raise TimeoutError(f"{what} did not finish within {timeout_s:.0f}s (hung loading, "
                               f"start-up or first step); abandoned")
    if "error" in box:
        raise box["error"]
    return box["result"]
