"""Streaming deltas: what is held back and when a chunk is due (pure logic)."""

from engine.entrypoints.openai_format import DeltaTracker, usage_of
from engine.outputs import CompletionOutput, RequestOutput


def comp(text: str, n_tokens: int, finish: str | None = None) -> CompletionOutput:
    return CompletionOutput(0, text, list(range(n_tokens)), finish)


def test_text_that_may_start_a_stop_string_is_held_back_until_safe():
    t = DeltaTracker()
    assert t.advance(comp("Hello wo", 3), ("world",)) == ("Hell", 0)
    assert t.advance(comp("Hello wo", 4), ("world",)) is None  # nothing new is safe yet
    assert t.advance(comp("Hello wor", 5), ("world",)) == ("o", 3)  # token 3's logprobs too
    # The engine cut the text at the stop string and finished: the rest goes out, never "wor".
    assert t.advance(comp("Hello ", 6, "stop"), ("world",)) == (" ", 5)
    assert t.text == "Hello " and t.finished


def test_half_decoded_character_is_not_sent():
    t = DeltaTracker()
    assert t.advance(comp("ab\ufffd", 2), ()) == ("ab", 0)
    assert t.advance(comp("abé", 3), ()) == ("é", 2)


def test_finish_without_new_text_sends_one_final_chunk():
    t = DeltaTracker()
    assert t.advance(comp("x", 1), ()) == ("x", 0)
    assert t.advance(comp("x", 2, "length"), ()) == ("", 1)
    assert t.advance(comp("x", 2, "length"), ()) is None
    assert t.total_tokens == 2


def test_usage_counts_every_completion_of_every_prompt():
    outs = [RequestOutput("a", "p", [1, 2, 3], [comp("x", 2), comp("y", 4)], True),
            RequestOutput("b", "q", [4], [comp("z", 1)], True)]
    u = usage_of(outs)
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (4, 7, 11)
