"""Incremental detokenization equals today's full decode after every token: multi-byte characters
split across tokens, invalid byte runs, special tokens skipped or kept, stop strings, and the
SmolLM2 tokenizer. A stream that drops its held-back tail is seen."""

import random

import pytest

from engine.loop import detokenizer
from engine.loop.detokenizer import IncrementalDetokenizer
from engine.loop.output_processor import OutputProcessor, RequestState
from engine.outputs import CompletionOutput
from engine.sampling_params import SamplingParams
from tests.engine.tiny_models import _byte_tokenizer

TEXTS = ["Hello, world!", "naïve café — déjà vu", "日本語のテキスト", "emoji 🎉🚀 end",
         "mixed: Ωμέγα, Привет, 你好, عربى", "  leading and trailing spaces  ", "a\nb\tc"]


@pytest.fixture(scope="module")
def byte_tok():
    return _byte_tokenizer()


def assert_every_prefix_equal(tok, ids, skip=True, chunk=1):
    detok = IncrementalDetokenizer(tok, skip)
    assert detok.stream is not None
    for end in list(range(chunk, len(ids), chunk)) + [len(ids)]:
        assert detok.decode(ids[:end]) == tok.decode(ids[:end], skip_special_tokens=skip), end


@pytest.mark.parametrize("chunk", [1, 3])
def test_every_prefix_of_multibyte_text_equals_the_full_decode(byte_tok, chunk):
    for text in TEXTS:
        assert_every_prefix_equal(byte_tok, byte_tok.encode(text), chunk=chunk)


@pytest.mark.parametrize("skip", [True, False])
def test_random_ids_with_special_tokens_and_invalid_bytes(byte_tok, skip):
    rng = random.Random(skip)
    for _ in range(30):
        ids = [rng.randrange(len(byte_tok)) for _ in range(rng.randrange(1, 40))]
        assert_every_prefix_equal(byte_tok, ids, skip=skip)


def test_a_stream_that_drops_its_held_back_tail_is_seen(byte_tok, monkeypatch):
    monkeypatch.setattr(IncrementalDetokenizer, "_tail", lambda self, ids: "")
    with pytest.raises(AssertionError):
        assert_every_prefix_equal(byte_tok, byte_tok.encode("🎉"))


class SlowTokenizer:
    """No backend_tokenizer: the full decode of today, used as the reference."""

    def __init__(self, tok):
        self.tok = tok

    def decode(self, ids, skip_special_tokens=False):
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)


def run_processor(tokenizer, ids, params):
    state = RequestState("r", None, [1], params, completions=[CompletionOutput(0, "", [])])
    proc, seen = OutputProcessor(tokenizer), []
    for end in range(1, len(ids) + 1):
        stop = proc.update_text(state, 0, ids[:end], None)
        seen.append((state.completions[0].text, stop))
        if stop:
            break
    return seen


@pytest.mark.parametrize("include", [False, True])
def test_stop_strings_cut_the_same_text(byte_tok, include):
    params = SamplingParams(stop=["🚀", "ext", "Ω"], include_stop_str_in_output=include)
    for text in TEXTS:
        ids = byte_tok.encode(text)
        assert run_processor(byte_tok, ids, params) == \
            run_processor(SlowTokenizer(byte_tok), ids, params)


def test_slow_tokenizers_and_space_cleanup_keep_the_full_decode(byte_tok):
    assert IncrementalDetokenizer(SlowTokenizer(byte_tok), True).stream is None
    byte_tok.clean_up_tokenization_spaces = True
    try:
        assert IncrementalDetokenizer(byte_tok, True).stream is None
    finally:
        byte_tok.clean_up_tokenization_spaces = False


def test_the_tail_context_is_bounded(byte_tok):
    ids = byte_tok.encode("x" * 50 + "🎉")
    detok = IncrementalDetokenizer(byte_tok, True)
    calls = []
    full = detok._full
    detok._full = lambda part: calls.append(len(part)) or full(part)
    detok.decode(ids[:-1])  # the emoji's last byte is missing: its first three are held back
    assert max(calls) <= detokenizer.TAIL_CONTEXT + 4


@pytest.mark.slow
def test_smollm2_tokenizer_every_prefix():
    from engine.demo_model import fetch_demo
    from engine.model_source import resolve_model
    from engine.tokenizer import load_tokenizer

    tok = load_tokenizer(resolve_model(str(fetch_demo())))
    for text in TEXTS + ["<|im_start|>assistant\nThe capital of France is Paris.<|im_end|>"]:
        ids = tok.encode(text)
        assert_every_prefix_equal(tok, ids, skip=True)
        assert_every_prefix_equal(tok, ids, skip=False)
    rng = random.Random(0)
    assert_every_prefix_equal(tok, [rng.randrange(len(tok)) for _ in range(60)])
