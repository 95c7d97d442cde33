"""bounded_call: a result or the call's own error in time; past the deadline a TimeoutError, and a
late result goes to on_late instead of leaking."""

import threading

import pytest

from engine.loop.bounded_call import bounded_call


def test_result_and_error_come_back():
    assert bounded_call(lambda: 42, 5, "answer") == 42
    with pytest.raises(KeyError):
        bounded_call(lambda: {}["x"], 5, "lookup")


def test_a_hang_is_abandoned_and_its_late_result_handed_over():
    release, late = threading.Event(), []
    got = threading.Event()

    def slow():
        release.wait(10)
        return "engine"

    with pytest.raises(TimeoutError, match="rebuild attempt did not finish within 0s"):
        bounded_call(slow, 0.1, "rebuild attempt", on_late=lambda r: (late.append(r), got.set()))
    release.set()
    assert got.wait(5) and late == ["engine"]
