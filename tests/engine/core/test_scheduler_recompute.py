"""The scheduler's part in longrope: a sequence crossing `recompute_at` is computed again from
token zero (HF's Phi-3 drops its cache there), and every step carries each sequence's length."""

from tests.engine.core.fake_model import FakeModel, make_scheduler, make_seq
from tests.engine.core.test_scheduler import step


def test_recompute_at_recomputes_a_sequence_crossing_it_from_token_zero():
    """longrope's boundary: at recompute_at + 1 tokens the whole sequence is computed again
    (every key moves to the long factors), once, and not counted as a preemption."""
    sched = make_scheduler(caching=False)
    sched.recompute_at = 8
    model = FakeModel(sched.bm)
    sched.add(make_seq(0, range(6), max_tokens=6))
    sched.add(make_seq(1, range(20, 32), max_tokens=2))  # past the boundary from the start
    out, _ = step(sched, model)
    assert [(s.start_pos, len(s.token_ids), s.context_len) for s in out.seqs] == [
        (0, 6, 6), (0, 12, 12)]
    for want in [(6, 1, 7), (7, 1, 8), (0, 9, 9), (9, 1, 10)]:
        out, _ = step(sched, model)
        assert (out.seqs[0].start_pos, len(out.seqs[0].token_ids),
                out.seqs[0].context_len) == want
    assert sched.num_preemptions == 0
