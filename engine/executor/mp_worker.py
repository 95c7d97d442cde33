"""Entry point of an mp worker process: serve RPCs from the driver over a pipe until told to stop
or until the driver goes away (EOF), so no worker outlives its engine."""

import logging
import os
import traceback

from onenode.errors import OnenodeError


def worker_main(conn, worker_kwargs: dict) -> None:
    logging.basicConfig(level=os.environ.get("ONENODE_LOG_LEVEL", "WARNING"),
                        format=f"(rank {worker_kwargs['rank']}) %(levelname)s %(message)s")
    from engine.worker.worker import Worker

    worker = Worker(**worker_kwargs)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        method, args, kwargs = msg
        try:
            conn.send(("ok", getattr(worker, method)(*args, **kwargs)))
        except OnenodeError as exc:
            conn.send(("err", exc))
        except Exception as exc:  # noqa: BLE001 - forwarded to the driver as one error
            conn.send(("err", RuntimeError(f"rank {worker_kwargs['rank']} failed in {method}: "
                                           f"{type(exc).__name__}: {exc}\n"
                                           f"{traceback.format_exc()}")))
    worker.shutdown()
