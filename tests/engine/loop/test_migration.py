"""Migration: a request resumed from what its client received continues exactly as the
uninterrupted run (greedy and seeded), and the bookkeeping never loses or repeats a token."""

import pytest

from engine import SamplingParams
from engine.layers import sampler
from engine.loop.llm_engine import LLMEngine
from engine.loop.migration import MigrationRecord, Resume
from engine.outputs import CompletionOutput, RequestOutput
from tests.engine.entrypoints.conftest import engine_config

PROMPT = "w5 w6 w7 w8 w9 w10 w11"


@pytest.fixture(scope="module")
def engine(tiny_llama):
    eng = LLMEngine(engine_config(tiny_llama))
    yield eng
    eng.shutdown()


def run(engine, request_id, prompt, params):
    engine.add_request(request_id, prompt, params)
    last = None
    while engine.has_unfinished_requests():
        for out in engine.step():
            last = out
    return last


def cut(out: RequestOutput, k: int) -> Resume:
    """What a client holds after k tokens of each completion (the migration's record)."""
    comps = tuple(CompletionOutput(c.index, "", list(c.token_ids[:k]), None,
                                   list(c.logprobs[:k]) if c.logprobs else None)
                  for c in out.outputs)
    return Resume(list(out.prompt_token_ids), out.prompt, comps)


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, logprobs=2),
    SamplingParams(temperature=1.0, top_p=0.9, seed=7, max_tokens=24, ignore_eos=True),
    SamplingParams(temperature=0.8, seed=3, n=2, max_tokens=24, ignore_eos=True,
                   presence_penalty=0.5, repetition_penalty=1.2),
], ids=["greedy", "seeded", "seeded-n2-penalties"])
def test_resumed_request_continues_as_the_uninterrupted_run(engine, params):
    full = run(engine, "full", PROMPT, params)
    for k in (1, 9):
        resumed = run(engine, f"resume{k}", cut(full, k), params)
        assert [c.token_ids for c in resumed.outputs] == [c.token_ids for c in full.outputs]
        assert [c.text for c in resumed.outputs] == [c.text for c in full.outputs]
        assert resumed.prompt_token_ids == full.prompt_token_ids
        if params.logprobs is not None:
            assert len(resumed.outputs[0].logprobs) == 24


def test_a_draw_that_depends_on_more_than_seed_and_position_breaks_resume(engine, monkeypatch):
    """The check sees the property: seed the draw by the request's own step count instead (which
    restarts at the resume) and the continuation changes."""
    params = SamplingParams(temperature=1.0, seed=11, max_tokens=16, ignore_eos=True)
    full = run(engine, "full-bug", PROMPT, params)
    steps = {}

    def by_step(seed, position):
        steps[seed] = steps.get(seed, -1) + 1
        return hash((seed, steps[seed])) & (2**63 - 1)

    monkeypatch.setattr(sampler, "draw_seed", by_step)
    steps.clear()
    resumed = run(engine, "resume-bug", cut(full, 6), params)
    assert resumed.outputs[0].token_ids != full.outputs[0].token_ids


def _out(tokens, finished=False, rid="inner"):
    return RequestOutput(rid, "p", [1, 2], [CompletionOutput(0, " ".join(map(str, tokens)),
                                                             list(tokens))], finished)


def test_bookkeeping_resumes_from_what_the_client_received():
    record = MigrationRecord("req", max_migrations=1)
    assert record.engine_request_id == "req" and record.migrate("p") == "p"  # nothing seen yet
    record = MigrationRecord("req", max_migrations=1)
    seen = record.observe(_out([5, 6, 7]))
    assert seen.request_id == "req" and record.num_tokens == 5
    resume = record.migrate("p")
    assert isinstance(resume, Resume) and resume.completions[0].token_ids == [5, 6, 7]
    assert resume.prompt_token_ids == [1, 2] and record.engine_request_id == "req#migrated1"
    assert not record.may_migrate()
    resume.completions[0].token_ids.append(8)  # the new engine mutates its copy
    assert record.last.outputs[0].token_ids == [5, 6, 7]
