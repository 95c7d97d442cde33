"""Turns OpenAI requests into engine requests and engine outputs into OpenAI responses.

Owns the checks that need the model (prompt + max_tokens vs max_model_len, token ids vs vocab),
the fan-out of one HTTP request into engine requests (several prompts, each with n completions)
and both response styles: one JSON body, or SSE chunks ending with `data: [DONE]`.
"""

import asyncio
import copy
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from engine.entrypoints import openai_format as fmt
from engine.entrypoints.errors import ApiError, error_body, from_exception
from engine.entrypoints.limits import check_count, check_queue
from engine.entrypoints.metrics import ServerMetrics
from engine.entrypoints.openai_protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    random_id,
)
from engine.entrypoints.openai_structured import compile_grammar, forced_tool_schema
from engine.entrypoints.server_config import ServerConfig
from engine.loop.engine_client import EngineClient
from engine.outputs import RequestOutput
from onenode.errors import ConfigError, OnenodeError

log = logging.getLogger("onenode.api")


class OpenAIServing:
    def __init__(self, async_engine: EngineClient, served_model_name: str, model_path: str,
                 server: ServerConfig | None = None):
        self.async_engine = async_engine
        self.served_model_name = served_model_name
        self.model_path = model_path
        self.server = server or ServerConfig()
        # The engine thread decodes with its tokenizer; private copies keep the Rust tokenizer
        # from being borrowed by two threads at once: `tokenizer` for the event loop (small
        # decodes of logprob tokens), `_encoder` for the one tokenizer thread below.
        self.tokenizer = copy.deepcopy(async_engine.tokenizer)
        self._encoder = copy.deepcopy(async_engine.tokenizer)
        template = self.server.chat_template_text()
        if template is not None:
            self.tokenizer.chat_template = self._encoder.chat_template = template
        # Tokenizing a large prompt or rendering a long chat takes milliseconds to seconds: it
        # runs on this one thread, off the event loop, so other streams keep flowing meanwhile.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onenode-tokenizer")
        self.max_model_len = async_engine.max_model_len
        self.vocab_size = async_engine.vocab_size
        # No token spells more than `longest` characters, so a longer text than this cannot fit
        # max_model_len: refused before it occupies the tokenizer thread (4x for byte markers).
        longest = max((len(t) for t in self._encoder.get_vocab()), default=1)
        self.max_prompt_chars = 4 * longest * self.max_model_len + 1024
        self.sampling_defaults = async_engine.default_sampling_params()
        self.metrics = ServerMetrics(async_engine, served_model_name)

    # ---- request preparation ----------------------------------------------------------------
    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.served_model_name:
            raise ApiError(404, f"the model '{model}' does not exist; this server serves "
                                f"'{self.served_model_name}'", param="model",
                           code="model_not_found")

    async def off_loop(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            if len(prompt) > self.max_prompt_chars:
                raise ApiError(400, f"this model's maximum context length is "
                                    f"{self.max_model_len} tokens, but the prompt has "
                                    f"{len(prompt)} characters, more than that many tokens can "
                                    f"hold; shorten the prompt", param="prompt",
                               code="context_length_exceeded")
            ids = await self.off_loop(self._encoder.encode, prompt)
        else:
            bad = [t for t in prompt if not 0 <= t < self.vocab_size]
            if bad:
                raise ApiError(400, f"token id {bad[0]} is out of range; the vocabulary has "
                                    f"{self.vocab_size} tokens", param="prompt",
                               code="invalid_value")
            ids = list(prompt)
        if not ids:
            raise ApiError(400, "the prompt is empty; give at least one token", param="prompt",
                           code="invalid_value")
        return ids

    def tokenize_text(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """On the tokenizer thread only (call through off_loop)."""
        return self._encoder.encode(text, add_special_tokens=add_special_tokens)

    async def decode(self, ids: list[int]) -> str:
        return await self.off_loop(self._encoder.decode, ids)

    async def chat_prompt(self, conversation: list[dict],
                          tools: list[dict] | None = None) -> list[int]:
        """Token ids of the conversation with the model's chat template, as LLM.chat builds."""
        check_count("messages", len(conversation), self.server.max_messages, "--max-messages",
                    "messages")
        return await self.off_loop(self._render_chat, conversation, tools)

    def _render_chat(self, conversation: list[dict], tools: list[dict] | None) -> list[int]:
        from engine.tokenizer import apply_chat_template

        try:
            return apply_chat_template(self._encoder, conversation, tools)
        except OnenodeError as exc:
            raise ApiError(400, str(exc), param="messages", code="invalid_value") from exc
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ApiError(400, f"the chat template cannot render these messages: {first}",
                           param="messages", code="invalid_value") from exc

    def with_defaults(self, params, fields_set: set[str]):
        """The model's generation_config.json values for the fields the request left unset."""
        unset = {k: v for k, v in self.sampling_defaults.items()
                 if k not in fields_set and k != "max_tokens"}
        return dataclasses.replace(params, **unset) if unset else params

    def admit(self, jobs: list, stops: int) -> None:
        """Request-wide limits, then the waiting queue (503 + Retry-After when full)."""
        check_count("stop strings", stops, self.server.max_stop_strings, "--max-stop-strings",
                    "stop")
        check_queue(self.async_engine.num_waiting, len(jobs), self.server.max_waiting_requests)
        if self.server.enable_log_requests:
            p = jobs[0][2]  # sizes and sampling only: prompts may hold secrets
            log.info("request: %d prompt(s), %s prompt tokens, n=%d max_tokens=%s "
                     "temperature=%s top_p=%s top_k=%s seed=%s", len(jobs),
                     "/".join(str(len(j[0])) for j in jobs[:8]), p.n, p.max_tokens,
                     p.temperature, p.top_p, p.top_k, p.seed)

    def max_tokens(self, num_prompt: int, requested: int | None, default: int | None) -> int:
        """Checks prompt + max_tokens against max_model_len; None means "the rest of it"."""
        room = self.max_model_len - num_prompt
        wanted = requested if requested is not None else (default or room)
        if room < 1 or wanted > room:
            raise ApiError(400, f"this model's maximum context length is {self.max_model_len} "
                                f"tokens, but {num_prompt + max(wanted, 1)} were requested "
                                f"({num_prompt} in the prompt, {max(wanted, 1)} for the "
                                f"completion); shorten the prompt or lower max_tokens",
                           param="max_tokens", code="context_length_exceeded")
        return wanted

    # ---- completions ------------------------------------------------------------------------
    async def completions(self, req: CompletionRequest):
        self.check_model(req.model)
        req.check_unsupported()
        if req.echo:
            raise ApiError(400, "echo is not supported by onenode; leave it false", param="echo",
                           code="invalid_value")
        prompts = req.prompts()
        check_count("prompts", len(prompts), self.server.max_prompts_per_request,
                    "--max-prompts-per-request", "prompt")
        # A full queue is refused before tokenizing; admit() checks again with the final count.
        check_queue(self.async_engine.num_waiting, len(prompts), self.server.max_waiting_requests)
        jobs = []
        for prompt in prompts:
            ids = await self.encode(prompt)
            params = req.sampling_params(self.max_tokens(len(ids), req.max_tokens, 16),
                                         req.logprobs, req.structured_params())
            params = self.with_defaults(params, req.model_fields_set)
            jobs.append((ids, prompt if isinstance(prompt, str) else None, params))
        self.admit(jobs, len(jobs[0][2].stop_strings))
        await compile_grammar(self.async_engine, jobs[0][2])
        request_id = random_id("cmpl")
        if req.stream:
            return self._sse(self._stream_completion(request_id, req, jobs))
        finals = await self._collect(request_id, jobs)
        return fmt.completion_response(self, request_id, finals, req.n)

    async def _stream_completion(self, request_id, req, jobs) -> AsyncIterator[str]:
        trackers: dict[int, fmt.DeltaTracker] = {}
        async for i, out in self._merged(request_id, jobs):
            chunk = fmt.completion_chunk(self, request_id, i, out, req.n, trackers,
                                         jobs[i][2].stop_strings)
            if chunk is not None:
                yield chunk.model_dump_json()
        if req.include_usage:
            yield fmt.usage_chunk_completion(self, request_id, trackers, jobs).model_dump_json()

    # ---- chat -------------------------------------------------------------------------------
    async def chat(self, req: ChatCompletionRequest):
        self.check_model(req.model)
        req.check_unsupported()
        check_queue(self.async_engine.num_waiting, 1, self.server.max_waiting_requests)
        schema, tool_name = forced_tool_schema(req.tools, req.tool_choice,
                                               req.parallel_tool_calls)
        if schema is not None and req.stream:
            raise ApiError(400, "streaming forced tool calls is not supported by onenode yet; "
                                "set stream=false", param="stream", code="invalid_value")
        tools = [t.model_dump(exclude_none=True) for t in req.tools or ()]
        ids = await self.encode(await self.chat_prompt(req.conversation(), tools))
        params = req.sampling_params(self.max_tokens(len(ids), req.requested_max_tokens(), None),
                                     req.num_logprobs(), req.structured_params(schema))
        params = self.with_defaults(params, req.model_fields_set)
        await compile_grammar(self.async_engine, params)
        jobs = [(ids, None, params)]
        self.admit(jobs, len(params.stop_strings))
        request_id = random_id("chatcmpl")
        if req.stream:
            return self._sse(self._stream_chat(request_id, req, jobs))
        finals = await self._collect(request_id, jobs)
        return fmt.chat_response(self, request_id, finals[0], params.logprobs or 0,
                                 forced_tool=schema is not None, tool_name=tool_name)

    async def _stream_chat(self, request_id, req, jobs) -> AsyncIterator[str]:
        yield fmt.chat_role_chunk(self, request_id, req.n).model_dump_json()
        trackers: dict[int, fmt.DeltaTracker] = {}
        async for _, out in self._merged(request_id, jobs):
            params = jobs[0][2]
            chunk = fmt.chat_chunk(self, request_id, out, trackers, params.stop_strings,
                                   params.logprobs or 0)
            if chunk is not None:
                yield chunk.model_dump_json()
        if req.include_usage:
            yield fmt.usage_chunk_chat(self, request_id, trackers, jobs).model_dump_json()

    # ---- driving the engine -----------------------------------------------------------------
    async def _generate(self, request_id: str, job) -> AsyncIterator[RequestOutput]:
        ids, text, params = job
        timer = self.metrics.timer()
        out = None
        try:
            async for out in self.async_engine.generate(request_id, ids, params,
                                                        prompt_text=text):
                timer.on_output(out)
                yield out
        except ConfigError as exc:  # the engine refused the request (e.g. a bad grammar): a 400
            raise from_exception(exc) from None
        if out is not None:
            timer.finish(out)

    async def _collect(self, request_id: str, jobs) -> list[RequestOutput]:
        async def last(i: int, job):
            out = None
            async for out in self._generate(f"{request_id}-{i}", job):
                pass
            return out

        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels (aborts) the others
                tasks = [group.create_task(last(i, job)) for i, job in enumerate(jobs)]
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None  # the client gets that error's status
        return [t.result() for t in tasks]

    async def _merged(self, request_id: str, jobs) -> AsyncIterator[tuple[int, RequestOutput]]:
        """Outputs of several engine requests in arrival order, as (prompt index, output)."""
        if len(jobs) == 1:
            async for out in self._generate(f"{request_id}-0", jobs[0]):
                yield 0, out
            return
        merged: asyncio.Queue = asyncio.Queue()

        async def pump(i: int, job):
            try:
                async for out in self._generate(f"{request_id}-{i}", job):
                    await merged.put((i, out))
            except Exception as exc:  # noqa: BLE001 - handed to the consumer below
                await merged.put((i, exc))
            finally:
                await merged.put((i, None))

        tasks = [asyncio.create_task(pump(i, job)) for i, job in enumerate(jobs)]
        try:
            remaining = len(tasks)
            while remaining:
                i, item = await merged.get()
                if item is None:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield i, item
        finally:
            for task in tasks:
                task.cancel()

    @staticmethod
    async def _sse(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        """SSE framing; an engine failure mid-stream becomes an `error` event, never a hang."""
        try:
            async for chunk in chunks:
                yield f"data: {chunk}\n\n"
        except Exception as exc:  # noqa: BLE001 - reported to the client in OpenAI's shape
            err = from_exception(exc)
            yield f"data: {json.dumps(error_body(err.status, err.message, err.param, err.code))}\n\n"
        yield "data: [DONE]\n\n"
