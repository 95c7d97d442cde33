"""StructuredOutputManager with xgrammar and a byte-level tokenizer: compile errors are one line,
masks allow exactly the grammar's next tokens, the grammar ends the sequence, state is freed."""

import pytest

from engine.core.scheduler_output import ScheduledSeq, SchedulerOutput
from engine.loop.structured_output import StructuredOutputManager, choice_grammar
from engine.layers.logits_processors import unpack_bitmask
from engine.sampling_params import SamplingParams
from engine.structured_outputs import StructuredOutputsParams as S
from tests.engine.tiny_models import _byte_tokenizer

pytest.importorskip("xgrammar")
EOS = 2


@pytest.fixture(scope="module")
def tok():
    return _byte_tokenizer()


@pytest.fixture
def manager(tok):
    return StructuredOutputManager(tok, 512, (EOS,))


def allowed(manager, seq_id=0) -> set[int]:
    s = ScheduledSeq(seq_id, [1], 0, [0], True, SamplingParams())
    manager.fill_bitmasks(SchedulerOutput([s]))
    return set(unpack_bitmask(s.grammar_bitmask, 512).nonzero().flatten().tolist())


def test_choice_masks_follow_the_text_and_end_with_eos(manager, tok):
    so = S(choice=["yes", "no"])
    manager.add(0, manager.compile(so), so)
    assert allowed(manager) == {tok.convert_tokens_to_ids("y"), tok.convert_tokens_to_ids("n")}
    for t in tok.encode("no"):
        assert manager.accept(0, t) is False
    assert allowed(manager) == {EOS}
    assert manager.accept(0, EOS) is True  # the grammar is complete: the sequence ends
    manager.free(0)
    assert 0 not in manager


def test_unscheduled_or_unsampled_seqs_get_no_mask(manager):
    so = S(regex="a+")
    manager.add(0, manager.compile(so), so)
    s = ScheduledSeq(0, [1, 2], 0, [0], False, SamplingParams())
    other = ScheduledSeq(1, [1], 0, [0], True, SamplingParams())
    manager.fill_bitmasks(SchedulerOutput([s, other]))
    assert s.grammar_bitmask is None and other.grammar_bitmask is None


def test_a_token_the_grammar_rejects_ends_the_sequence(manager, tok):
    so = S(regex="[0-9]+")
    manager.add(3, manager.compile(so), so)
    assert manager.accept(3, tok.convert_tokens_to_ids("x")) is True


@pytest.mark.parametrize("so,field", [
    (S(json={"type": "nonsense"}), "json"),
    (S(regex="(unclosed"), "regex"),
    (S(grammar="root ::= undefined_rule"), "grammar"),
])
def test_bad_constraints_are_one_line_config_errors(manager, so, field):
    with pytest.raises(ValueError, match=rf"structured_outputs\.{field} cannot be compiled") as e:
        manager.compile(so)
    assert "\n" not in str(e.value) and ".cc:" not in str(e.value)


def test_choice_grammar_escapes_quotes_and_backslashes():
    assert choice_grammar(['a"b', "c\\d"]) == 'root ::= "a\\"b" | "c\\\\d"'


def test_json_masks_raw_control_characters(manager, tok):
    so = S(json={"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]})
    manager.add(5, manager.compile(so), so)
    for t in tok.encode('{"s": "'):
        assert manager.accept(5, t) is False
    inside = allowed(manager, 5)
    assert tok.convert_tokens_to_ids("a") in inside
    control = [t for t in range(3, 259) if any(ord(c) < 0x20 for c in tok.decode([t]))]
    assert len(control) == 32 and not inside & set(control)
