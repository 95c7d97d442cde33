"""The OpenAI-compatible HTTP server: FastAPI routes over an EngineClient, run by uvicorn.

`build_app` wires routes, auth and error handling (no I/O, used by tests with a live engine);
`run_server` is what `onenode serve` calls: load the engine, serve until Ctrl-C / SIGTERM, then
shut the engine and its workers down.
"""

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import signal

from fastapi import Depends, FastAPI, Header, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse

from engine import __version__
from engine.config import EngineConfig
from engine.loop.async_engine import AsyncEngine
from engine.loop.engine_client import EngineClient
from engine.loop.rebuilder import EngineRebuilder
from engine.entrypoints.errors import (ApiError, error_body, error_response,
                                       install_error_handlers)
from engine.entrypoints.limits import BodyLimit
from engine.entrypoints.metrics import CONTENT_TYPE
from engine.entrypoints.openai_protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
)
from engine.entrypoints.openai_serving import OpenAIServing
from engine.entrypoints.server_config import ServerConfig
from engine.entrypoints.stats_log import StatsLogger
from engine.logger import init_logger
from onenode.secrets import SecretFilter

log = init_logger("onenode.api")


def build_app(async_engine: EngineClient, served_model_name: str, model_path: str,
              api_key: str | None = None, server: ServerConfig | None = None) -> FastAPI:
    """`api_key` (tests' shortcut) adds to server.api_key."""
    server = server or ServerConfig()
    keys = tuple(k for k in (*server.api_keys(), api_key) if k)
    serving = OpenAIServing(async_engine, served_model_name, model_path, server)
    app = FastAPI(title="onenode", version=__version__, lifespan=_lifespan(async_engine, server))
    app.state.serving = serving
    install_error_handlers(app)
    if server.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(server.allowed_origins),
                           allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(BodyLimit, max_bytes=server.max_request_body_bytes)
    auth = [Depends(_require_key(keys))] if keys else []
    _open_routes(app, async_engine, serving)
    _openai_routes(app, serving, auth)
    return app


def _lifespan(async_engine: EngineClient, server: ServerConfig):
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        task = None
        if not server.disable_log_stats:
            stats = StatsLogger(lambda: async_engine.stats, server.log_stats_interval_s,
                                async_engine.health)
            task = asyncio.create_task(stats.run())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()

    return lifespan


def _require_key(keys: tuple[str, ...]):
    expected = [f"Bearer {k}".encode() for k in keys]

    async def check(authorization: str | None = Header(None)):
        given = (authorization or "").encode()
        # Compare with every key (no early exit), so timing does not tell which one matched.
        if not sum(secrets.compare_digest(given, e) for e in expected):
            raise ApiError(401, "invalid or missing API key; send 'Authorization: Bearer <key>' "
                                "with a key given to --api-key / VLLM_API_KEY",
                           code="invalid_api_key")

    return check


def _open_routes(app: FastAPI, async_engine: EngineClient, serving: OpenAIServing) -> None:
    """Probes stay open when an API key is set, like vLLM's."""

    @app.get("/health")
    async def health():
        state = async_engine.health()
        replicas = [{"replica": r.replica, "state": r.state, "restarts": r.restarts}
                    for r in state.replicas]
        if async_engine.alive and state.degraded:  # a re-planned layout: serving, but say so
            return {"state": "serving", "degraded": True, "layout": state.degraded}
        if async_engine.alive:
            # Data parallel: 200 while any replica serves, with each one's state.
            return {"state": "serving", "replicas": replicas} if replicas else \
                Response(status_code=200)
        err = unavailable(async_engine)
        extra = {"replicas": replicas} if replicas else {}
        return JSONResponse({**error_body(err.status, err.message, code=err.code), **extra},
                            status_code=err.status, headers=err.headers)

    @app.get("/live")
    async def live():
        """Liveness (Kubernetes): 503 only once the engine gave up (state "failed": its own
        recovery budget is spent, or it is dead for good); a rebuild in progress is alive."""
        health = async_engine.health()
        if health.alive or health.state != "failed":
            return Response(status_code=200)
        return error_response(503, health.message or "the engine failed", code="engine_failed")

    @app.get("/metrics")
    async def metrics():
        return Response(serving.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/version")
    async def version():
        return {"version": __version__}


def _openai_routes(app: FastAPI, serving: OpenAIServing, auth: list) -> None:
    @app.get("/v1/models", dependencies=auth)
    async def models():
        card = ModelCard(id=serving.served_model_name, root=serving.model_path,
                         max_model_len=serving.max_model_len)
        return ModelList(data=[card])

    @app.post("/v1/completions", dependencies=auth)
    async def completions(req: CompletionRequest, raw: Request):
        return await _respond(serving, raw, serving.completions(req))

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat(req: ChatCompletionRequest, raw: Request):
        return await _respond(serving, raw, serving.chat(req))

    @app.post("/tokenize", dependencies=auth)
    async def tokenize(req: TokenizeRequest):
        serving.check_model(req.model)
        if (req.prompt is None) == (req.messages is None):
            raise ApiError(400, "give exactly one of 'prompt' or 'messages'", param="prompt",
                           code="invalid_value")
        if req.messages is not None:
            ids = await serving.chat_prompt([{"role": m.role, "content": m.text()}
                                             for m in req.messages])
        else:
            ids = await serving.off_loop(functools.partial(
                serving.tokenize_text, req.prompt, req.add_special_tokens))
        return TokenizeResponse(count=len(ids), max_model_len=serving.max_model_len, tokens=ids)

    @app.post("/detokenize", dependencies=auth)
    async def detokenize(req: DetokenizeRequest):
        serving.check_model(req.model)
        return DetokenizeResponse(prompt=await serving.decode(await serving.encode(req.tokens)))


async def _respond(serving: OpenAIServing, raw: Request, work):
    """Runs a handler, cancelling it (which aborts its engine requests) if the client leaves."""
    if not serving.async_engine.alive:
        work.close()
        raise unavailable(serving.async_engine)
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_client_gone(raw))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return Response(status_code=499)
    result = task.result()
    if hasattr(result, "__aiter__"):
        return StreamingResponse(result, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    return JSONResponse(result.model_dump())


def unavailable(client: EngineClient) -> ApiError:
    """503 while the engine is not serving: with Retry-After while it rebuilds itself."""
    health = client.health()
    if health.retry_after_s is not None:
        code = "engine_failed" if health.state == "failed" else "engine_recovering"
        return ApiError(503, health.message, code=code,
                        headers={"Retry-After": str(health.retry_after_s)})
    return ApiError(503, health.message, code="engine_dead")


async def _client_gone(raw: Request) -> None:
    while (await raw.receive())["type"] != "http.disconnect":
        pass


def run_server(engine_config: EngineConfig, server: ServerConfig | None = None) -> None:
    """Load the engine, serve until Ctrl-C / SIGTERM (streams in flight drain for up to
    --shutdown-timeout seconds), then stop the engine and its workers. Exits non-zero when the
    engine failed and could not recover, so an outer supervisor restarts the server."""
    server = server or ServerConfig()
    host, port, api_key = server.host, server.port, server.api_keys()
    secrets_filter = SecretFilter([*api_key, os.environ.get("HF_TOKEN"),
                                   os.environ.get("HUGGING_FACE_HUB_TOKEN")])
    _attach_filter(secrets_filter)
    # SIGTERM while the model loads must still run the cleanup below (workers are processes).
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    box: dict = {}
    async_engine, what = _start_engines(engine_config, server, lambda: _stop_failed(box))
    try:
        name = server.served_model_name or engine_config.model
        app = build_app(async_engine, name, engine_config.model, server=server)
        box["server"] = _server(app, server, secrets_filter)
        log.info("serving '%s' (%s) at http://%s:%d/v1 -- health at /health, metrics at "
                 "/metrics%s", name, what, host, port, ", API key required" if api_key else "")
        box["server"].run()
    except KeyboardInterrupt:
        pass
    finally:
        async_engine.shutdown()
        signal.signal(signal.SIGTERM, previous)
        log.info("engine shut down")
    if box.get("failed"):
        log.error("exiting: %s", async_engine.health().message)
        raise SystemExit(1)


def _start_engines(engine_config: EngineConfig, server: ServerConfig, on_failed):
    """The EngineClient to serve: one engine, or data-parallel replicas behind a router; and
    the words the start-up line uses for it."""
    if engine_config.data_parallel_size > 1:
        from engine.entrypoints.dp_serve import start_data_parallel

        return start_data_parallel(engine_config, server, EngineRebuilder, on_failed)
    from engine.loop.llm_engine import LLMEngine

    engine = LLMEngine(engine_config)
    rebuilder = EngineRebuilder(engine_config, engine.backend, server.replan_after,
                                engine.model_config)
    client = AsyncEngine(engine, rebuilder=rebuilder, recovery=server.recovery_config(),
                         watchdog=server.watchdog_config(), on_failed=on_failed,
                         grow_back_drain_s=server.shutdown_timeout)
    return client, f"{engine.backend} backend, {engine.num_blocks} KV blocks"


def _server(app, server: ServerConfig, secrets_filter):
    import uvicorn

    # On SIGTERM uvicorn stops accepting, lets responses in flight (streams) finish for up to
    # timeout_graceful_shutdown seconds, then run_server stops the workers.
    config = uvicorn.Config(app, host=server.host, port=server.port,
                            log_level=server.uvicorn_log_level, root_path=server.root_path or "",
                            timeout_graceful_shutdown=server.shutdown_timeout)
    _attach_filter(secrets_filter)  # uvicorn.Config just (re)built its handlers
    return uvicorn.Server(config)


def _stop_failed(box: dict) -> None:
    box["failed"] = True
    if "server" in box:
        box["server"].should_exit = True


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _attach_filter(flt: logging.Filter) -> None:
    for name in ("", "onenode", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if flt not in handler.filters:
                handler.addFilter(flt)
