"""OpenAI-shaped errors for the API server: `{"error": {"message", "type", "param", "code"}}`.

Every failure the server reports goes through `ApiError` or one of the handlers installed by
`install_error_handlers`, so a client never sees a traceback or FastAPI's default 422 shape.
"""

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from onenode.errors import ConfigError, EngineDeadError, OnenodeError

log = logging.getLogger("onenode.api")

# OpenAI's `type` strings per status, so the official client maps them to its exception classes.
_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
          404: "invalid_request_error", 405: "invalid_request_error",
          413: "invalid_request_error",
          500: "internal_server_error", 503: "service_unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers  # e.g. Retry-After while the engine rebuilds itself


def error_body(status: int, message: str, param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status,
                        headers=headers)


def from_exception(exc: BaseException) -> ApiError:
    """Map an engine-side error to what the client should see."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, EngineDeadError) and getattr(exc, "retry_after_s", None) is not None:
        # The engine rebuilds itself: the client should retry, not page someone.
        return ApiError(503, f"the engine is not serving ({exc}); it is rebuilding itself, retry "
                             f"in {exc.retry_after_s}s", code="engine_recovering",
                        headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, EngineDeadError):
        return ApiError(503, f"the engine is dead ({exc}); restart `onenode serve`",
                        code="engine_dead")
    if isinstance(exc, ConfigError):
        return ApiError(400, str(exc), param=_param_of(str(exc)), code="invalid_value")
    return ApiError(500, "internal server error; see the server log", code="internal_error")


def _param_of(message: str) -> str | None:
    # SamplingParams errors read "SamplingParams.<field>=<value> is invalid; ..." or
    # "SamplingParams.<field> has token id ...".
    found = re.match(r"SamplingParams\.(\w+)", message)
    return found.group(1) if found else None


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON; send a JSON object", None
    if first.get("type") == "missing" and not loc:
        return "the request body is missing; send a JSON object", None
    param = loc[0] if loc else None
    where = ".".join(loc) if loc else "body"
    msg = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        return f"missing required field '{where}'", param
    return f"invalid value for '{where}': {msg}", param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.param, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(400, message, param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail),
                              headers=getattr(exc, "headers", None))

    # Our own errors (engine dead, bad config) are answered here, not by the catch-all below:
    # Starlette re-raises what reaches that one, and uvicorn logs it as a crash.
    @app.exception_handler(OnenodeError)
    async def _onenode(_: Request, exc: OnenodeError):
        err = from_exception(exc)
        return error_response(err.status, err.message, err.param, err.code, err.headers)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception):
        err = from_exception(exc)
        if err.status == 500:
            log.error("request failed", exc_info=exc)
        return error_response(err.status, err.message, err.param, err.code, err.headers)
