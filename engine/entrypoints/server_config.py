"""ServerConfig: the HTTP server's own settings (what EngineConfig does not hold), with vLLM's flag
names; `onenode serve` derives its flags from these fields and EngineConfig's.

The limits keep one request from taking the server down: the body size (413), prompts per
request, stop strings and messages (400 naming the limit), and the waiting queue (503 with
Retry-After when full).
"""

from dataclasses import dataclass

from onenode.errors import ConfigError
from onenode.options import check_ranges, option

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = option("127.0.0.1", help="0.0.0.0 to listen on every interface (inside a "
                                         "container)")
    port: int = option(8000, range=(1, 65535))
    api_key: tuple[str, ...] = option(
        (), envvar=("VLLM_API_KEY", "ONENODE_API_KEY"), secret=True,
        help="require 'Authorization: Bearer KEY' on /v1/* (repeat for several keys)")
    api_key_file: str | None = option(
        None, envvar=("ONENODE_API_KEY_FILE",),
        help="file holding the API key, e.g. a read-only mount (keeps the key out of argv/env)")
    served_model_name: str | None = option(None, help="model name clients send (default: MODEL "
                                                      "as given)")
    chat_template: str | None = option(
        None, help="a Jinja chat template, inline or a file path (default: the tokenizer's)")
    uvicorn_log_level: str = option("info", help=" | ".join(LOG_LEVELS))
    enable_log_requests: bool = option(
        False, flags=("--enable-log-requests/--disable-log-requests",),
        help="log each request's id, prompt size and sampling parameters (never the text)")
    disable_log_stats: bool = option(False, help="no periodic engine statistics line")
    log_stats_interval_s: float = option(10.0, range=(0.1, None), hidden=True)
    allowed_origins: tuple[str, ...] = option(
        (), help="CORS origins allowed to call the API (repeat; '*' for any; default none)")
    root_path: str | None = option(None, help="path prefix when behind a reverse proxy")
    max_waiting_requests: int = option(
        1024, range=(1, None), help="engine requests allowed to wait; more get 503 + Retry-After")
    max_request_body_bytes: int = option(8 * MiB, range=(1024, None),
                                         help="larger request bodies get 413")
    max_prompts_per_request: int = option(1024, range=(1, None))
    max_stop_strings: int = option(64, range=(1, None))
    max_messages: int = option(2048, range=(1, None), help="chat messages per request")
    recovery_timeout: float = option(
        300.0, range=(1, None),
        help="seconds a crash loop may take to serve again; then the state is 'failed' (503 + "
             "Retry-After, retrying every 60 s)")
    recovery: bool = option(
        True, flags=("--recovery/--no-recovery",),
        help="rebuild the engine after a rank dies (--no-recovery: stay dead, /health 503)")
    replan_after: float = option(
        120.0, range=(0, None),
        help="ray backend: seconds a node may be gone before the engine re-plans onto the nodes "
             "that remain (fewer pipeline stages) and serves degraded; it grows back when the "
             "node returns (0: never re-plan, wait for the node)")
    max_migrations: int = option(
        1, range=(0, None),
        help="with --data-parallel-size > 1: times a request may move to a live replica when its "
             "replica dies (0: fail it, as one engine would)")
    step_timeout: float = option(
        30.0, range=(0.1, None),
        help="seconds a step may take at least before the engine counts as stuck (503, requests "
             "failed, workers restarted); measured step times raise it for long steps")
    shutdown_timeout: float = option(
        30.0, range=(0, None), help="on SIGTERM, seconds to let streams in flight finish")

    def __post_init__(self):
        check_ranges(self)
        if self.uvicorn_log_level not in LOG_LEVELS:
            raise ConfigError(f"uvicorn_log_level={self.uvicorn_log_level!r}; use one of "
                              f"{', '.join(LOG_LEVELS)}")
        if any(not k for k in self.api_key):
            raise ConfigError("api_key must not be empty; give the key or leave it unset")

    def recovery_config(self):
        from engine.loop.recovery import RecoveryConfig

        return RecoveryConfig(enabled=self.recovery, timeout_s=self.recovery_timeout)

    def watchdog_config(self):
        from engine.loop.watchdog import WatchdogConfig

        return WatchdogConfig(step_timeout_s=self.step_timeout)

    def api_keys(self) -> tuple[str, ...]:
        """Every accepted key: --api-key / VLLM_API_KEY / ONENODE_API_KEY and --api-key-file."""
        from onenode.secrets import read_key_file

        from_file = (read_key_file(self.api_key_file)[1],) if self.api_key_file else ()
        return tuple(self.api_key) + from_file

    def chat_template_text(self) -> str | None:
        """vLLM's rule: a path to a file, else the template itself."""
        from pathlib import Path

        if self.chat_template is None:
            return None
        path = Path(self.chat_template).expanduser()
        if len(self.chat_template) < 4096 and path.is_file():
            return path.read_text()
        if "{" not in self.chat_template:
            raise ConfigError(f"chat_template {self.chat_template!r} is neither a file nor a "
                              f"Jinja template; pass the path of a .jinja file")
        return self.chat_template
