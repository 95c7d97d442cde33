"""Engine outputs -> OpenAI response objects (whole bodies and stream chunks), usage and logprobs.

Streaming sends text deltas of the engine's cumulative text. Two things are held back until they
are safe: a trailing U+FFFD (a multi-byte character still being decoded) and, when stop strings
are set, the last len(longest stop) - 1 characters (they may turn out to be the start of a stop
string, which must never reach the client).
"""

from dataclasses import dataclass

from engine.entrypoints.openai_protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatLogprobs,
    ChatStreamChoice,
    CompletionChoice,
    CompletionLogprobs,
    CompletionResponse,
    DeltaMessage,
    TokenLogprob,
    TopLogprob,
    UsageInfo,
)
from engine.entrypoints.openai_structured import tool_calls_of
from engine.outputs import CompletionOutput, RequestOutput


@dataclass
class DeltaTracker:
    """What one choice has already sent in a stream."""
    text: str = ""
    num_tokens: int = 0  # tokens whose logprobs were sent
    total_tokens: int = 0  # tokens generated so far (for usage)
    prompt_tokens: int = 0
    finished: bool = False

    def advance(self, comp: CompletionOutput, stops: tuple[str, ...]):
        """Returns (delta text, first new token index) or None when there is nothing to send."""
        finished = comp.finish_reason is not None
        text = comp.text
        if not finished:
            end = len(text) - (max((len(s) for s in stops), default=1) - 1)
            while end > 0 and text[end - 1] == "\ufffd":
                end -= 1
            text = text[:max(end, 0)]
        delta = text[len(self.text):]
        self.total_tokens = len(comp.token_ids)
        if not delta and not (finished and not self.finished):
            return None
        start = self.num_tokens
        self.text = self.text + delta
        self.num_tokens, self.finished = len(comp.token_ids), finished
        return delta, start


def usage_of(outputs: list[RequestOutput]) -> UsageInfo:
    prompt = sum(len(o.prompt_token_ids) for o in outputs)
    completion = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    return UsageInfo(prompt_tokens=prompt, completion_tokens=completion,
                     total_tokens=prompt + completion)


def _usage_from_trackers(trackers: dict, jobs) -> UsageInfo:
    prompt = sum(len(job[0]) for job in jobs)
    completion = sum(t.total_tokens for t in trackers.values())
    return UsageInfo(prompt_tokens=prompt, completion_tokens=completion,
                     total_tokens=prompt + completion)


# ---- logprobs -------------------------------------------------------------------------------
_WINDOW = 4  # tokens of left context that make a token's text exact (spaces, merged bytes)


def _piece(tokenizer, ids: list[int], i: int, token_id: int) -> str:
    """Text that `token_id` adds after ids[:i], so a choice's token strings join to its text."""
    ctx = ids[max(0, i - _WINDOW):i]
    before = tokenizer.decode(ctx)
    after = tokenizer.decode(ctx + [token_id])
    return after[len(before):] if after.startswith(before) else tokenizer.decode([token_id])


def _ranked(entry: dict) -> list[tuple[int, float]]:
    return sorted(entry.items(), key=lambda kv: -kv[1])


def completion_logprobs(serving, comp: CompletionOutput, start: int,
                        offset: int) -> CompletionLogprobs | None:
    if comp.logprobs is None:
        return None
    tok, ids, out = serving.tokenizer, comp.token_ids, CompletionLogprobs()
    for i in range(start, min(len(ids), len(comp.logprobs))):
        entry, token = comp.logprobs[i], _piece(tok, ids, i, ids[i])
        out.tokens.append(token)
        out.token_logprobs.append(entry.get(ids[i]))
        out.top_logprobs.append({_piece(tok, ids, i, t): lp for t, lp in _ranked(entry)})
        out.text_offset.append(offset)
        offset += len(token)
    return out


def chat_logprobs(serving, comp: CompletionOutput, start: int, top: int) -> ChatLogprobs | None:
    if comp.logprobs is None:
        return None
    tok, ids, content = serving.tokenizer, comp.token_ids, []
    for i in range(start, min(len(ids), len(comp.logprobs))):
        entry, token = comp.logprobs[i], _piece(tok, ids, i, ids[i])
        tops = []
        for tid, lp in _ranked(entry)[:top]:
            alt = _piece(tok, ids, i, tid)
            tops.append(TopLogprob(token=alt, logprob=lp, bytes=list(alt.encode())))
        content.append(TokenLogprob(token=token, logprob=entry.get(ids[i], -9999.0),
                                    bytes=list(token.encode()), top_logprobs=tops))
    return ChatLogprobs(content=content)


# ---- completions ----------------------------------------------------------------------------
def completion_response(serving, request_id: str, finals: list[RequestOutput],
                        n: int) -> CompletionResponse:
    choices = []
    for i, out in enumerate(finals):
        for comp in out.outputs:
            choices.append(CompletionChoice(
                index=i * n + comp.index, text=comp.text,
                logprobs=completion_logprobs(serving, comp, 0, 0),
                finish_reason=comp.finish_reason, stop_reason=comp.stop_reason))
    return CompletionResponse(id=request_id, model=serving.served_model_name, choices=choices,
                              usage=usage_of(finals))


def completion_chunk(serving, request_id: str, prompt_index: int, out: RequestOutput, n: int,
                     trackers: dict, stops) -> CompletionResponse | None:
    choices = []
    for comp in out.outputs:
        index = prompt_index * n + comp.index
        tracker = trackers.setdefault(index, DeltaTracker())
        offset = len(tracker.text)
        step = tracker.advance(comp, stops)
        if step is None:
            continue
        delta, start = step
        choices.append(CompletionChoice(
            index=index, text=delta, logprobs=completion_logprobs(serving, comp, start, offset),
            finish_reason=comp.finish_reason, stop_reason=comp.stop_reason))
    if not choices:
        return None
    return CompletionResponse(id=request_id, model=serving.served_model_name, choices=choices)


def usage_chunk_completion(serving, request_id: str, trackers, jobs) -> CompletionResponse:
    return CompletionResponse(id=request_id, model=serving.served_model_name, choices=[],
                              usage=_usage_from_trackers(trackers, jobs))


# ---- chat -----------------------------------------------------------------------------------
def chat_response(serving, request_id: str, final: RequestOutput, top: int,
                  forced_tool: bool = False, tool_name: str | None = None
                  ) -> ChatCompletionResponse:
    """`forced_tool`: the output is a forced tool call, of `tool_name` (None: "required")."""
    choices = [ChatChoice(index=c.index, message=_message(c.text, forced_tool, tool_name),
                          logprobs=chat_logprobs(serving, c, 0, top),
                          finish_reason=c.finish_reason, stop_reason=c.stop_reason)
               for c in final.outputs]
    return ChatCompletionResponse(id=request_id, model=serving.served_model_name,
                                  choices=choices, usage=usage_of([final]))


def _message(text: str, forced_tool: bool, tool_name: str | None) -> AssistantMessage:
    """A forced tool call's JSON becomes tool_calls (vLLM's shape); incomplete JSON (max_tokens
    reached) stays visible as content."""
    calls = tool_calls_of(text, tool_name) if forced_tool else None
    if calls is None:
        return AssistantMessage(content=text)
    return AssistantMessage(content=None, tool_calls=calls)


def chat_role_chunk(serving, request_id: str, n: int) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id=request_id, model=serving.served_model_name,
        choices=[ChatStreamChoice(index=i, delta=DeltaMessage(role="assistant", content=""))
                 for i in range(n)])


def chat_chunk(serving, request_id: str, out: RequestOutput, trackers: dict,
               stops, top: int) -> ChatCompletionChunk | None:
    choices = []
    for comp in out.outputs:
        tracker = trackers.setdefault(comp.index, DeltaTracker())
        step = tracker.advance(comp, stops)
        if step is None:
            continue
        delta, start = step
        choices.append(ChatStreamChoice(
            index=comp.index, delta=DeltaMessage(content=delta or None),
            logprobs=chat_logprobs(serving, comp, start, top), finish_reason=comp.finish_reason))
    if not choices:
        return None
    return ChatCompletionChunk(id=request_id, model=serving.served_model_name, choices=choices)


def usage_chunk_chat(serving, request_id: str, trackers, jobs) -> ChatCompletionChunk:
    return ChatCompletionChunk(id=request_id, model=serving.served_model_name, choices=[],
                               usage=_usage_from_trackers(trackers, jobs))
