"""Turns OpenAI requests into engine requests and engine outputs into OpenAI responses.

Owns the checks that need the model (prompt + max_tokens vs max_model_len, token ids vs vocab),
the fan-out of one HTTP request into engine requests (several prompts, each with n completions)
and both response styles: one JSON body, or SSE chunks ending with `data: [DONE]`.
"""

import asyncio
import copy
import json
from collections.abc import AsyncIterator

from engine.entrypoints import openai_format as fmt
from engine.entrypoints.errors import ApiError, error_body, from_exception
from engine.entrypoints.metrics import ServerMetrics
from engine.entrypoints.openai_protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    random_id,
)
from engine.entrypoints.openai_structured import forced_tool_schema
from engine.outputs import RequestOutput
from onenode.errors import ConfigError, OnenodeError


class OpenAIServing:
    def __init__(self, async_engine, served_model_name: str, model_path: str):
        engine = async_engine.engine
        self.async_engine = async_engine
        self.served_model_name = served_model_name
        self.model_path = model_path
        # The engine thread decodes with its tokenizer; a private copy keeps the Rust tokenizer
        # from being borrowed by two threads at once.
        self.tokenizer = copy.deepcopy(engine.tokenizer)
        self.max_model_len = engine.max_model_len
        self.vocab_size = engine.model_config.vocab_size
        self.metrics = ServerMetrics(async_engine, served_model_name)

    # ---- request preparation ----------------------------------------------------------------
    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.served_model_name:
            raise ApiError(404, f"the model '{model}' does not exist; this server serves "
                                f"'{self.served_model_name}'", param="model",
                           code="model_not_found")

    def encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt)
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

    async def compile_grammar(self, params) -> None:
        """Compile the request's grammar off the event loop and the engine thread (the engine's
        compile then hits xgrammar's cache); a bad one is a 400 before any streaming starts."""
        if params.structured_outputs is None:
            return
        try:
            await asyncio.to_thread(self.async_engine.engine.structured.compile,
                                    params.structured_outputs)
        except ConfigError as exc:
            raise from_exception(exc) from None

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

    def chat_prompt(self, conversation: list[dict], tools: list[dict] | None = None) -> list[int]:
        """Token ids of the conversation with the model's chat template, as LLM.chat builds."""
        from engine.tokenizer import apply_chat_template

        try:
            return apply_chat_template(self.tokenizer, conversation, tools)
        except OnenodeError as exc:
            raise ApiError(400, str(exc), param="messages", code="invalid_value") from exc
        except Exception as exc:  # noqa: BLE001 - template errors come from the client's input
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ApiError(400, f"the chat template cannot render these messages: {first}",
                           param="messages", code="invalid_value") from exc

    # ---- completions ------------------------------------------------------------------------
    async def completions(self, req: CompletionRequest):
        self.check_model(req.model)
        req.check_unsupported()
        if req.echo:
            raise ApiError(400, "echo is not supported by onenode; leave it false", param="echo",
                           code="invalid_value")
        prompts = req.prompts()
        jobs = []
        for prompt in prompts:
            ids = self.encode(prompt)
            params = req.sampling_params(self.max_tokens(len(ids), req.max_tokens, 16),
                                         req.logprobs, req.structured_params())
            jobs.append((ids, prompt if isinstance(prompt, str) else None, params))
        await self.compile_grammar(jobs[0][2])
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
        schema, tool_name = forced_tool_schema(req.tools, req.tool_choice,
                                               req.parallel_tool_calls)
        if schema is not None and req.stream:
            raise ApiError(400, "streaming forced tool calls is not supported by onenode yet; "
                                "set stream=false", param="stream", code="invalid_value")
        tools = [t.model_dump(exclude_none=True) for t in req.tools or ()]
        ids = self.encode(self.chat_prompt(req.conversation(), tools))
        params = req.sampling_params(self.max_tokens(len(ids), req.requested_max_tokens(), None),
                                     req.num_logprobs(), req.structured_params(schema))
        await self.compile_grammar(params)
        jobs = [(ids, None, params)]
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
