"""The chaos bench's bookkeeping (pure): detection and recovery times from /health samples, and
requests sorted into completed, failed (clearly or not), hung and 500."""

from bench.chaos import summarize, table
from bench.chaos_load import Outcome


def test_a_fault_that_is_detected_degrades_then_serves():
    samples = [(9.0, 200, {}), (10.5, 200, {}), (14.0, 503, {"retry_after": "10"}),
               (40.0, 200, {"degraded": True, "layout": "TP=1 x PP=2"})]
    outcomes = [Outcome(5, 12, "ok"), Outcome(8, 13, "stream_error", '{"error": "stuck"}'),
                Outcome(15, 15.1, "http_503", "recovering", "10"), Outcome(16, 61, "hung")]
    row = summarize(10.0, outcomes, samples)
    assert (row["detect_s"], row["serve_s"], row["served_degraded"]) == (4.0, 30.0, True)
    assert (row["completed"], row["failed"], row["hung"], row["http_500"]) == (1, 2, 1, 0)
    assert row["unclear"] == [] and row["health_503_without_retry_after"] == 0
    assert row["refused_503"] == 1


def test_unclear_failures_and_500s_are_counted():
    outcomes = [Outcome(0, 1, "http_503", "busy", None), Outcome(0, 1, "connection", "refused"),
                Outcome(0, 1, "http_500", "boom"),
                Outcome(0, 1, "stream_error", '{"type": "internal_server_error"}')]
    row = summarize(0.0, outcomes, [(1.0, 503, {"retry_after": None})])
    assert len(row["unclear"]) == 2 and row["http_500"] == 2
    assert row["health_503_without_retry_after"] == 1 and row["serve_s"] is None


def test_an_unnoticed_fault_serves_throughout_and_tabulates():
    row = summarize(0.0, [Outcome(0, 1, "ok")], [(1.0, 200, {})])
    assert row["detect_s"] is None and row["serve_s"] == 0.0 and row["failed"] == 0
    text = table({"faults": {"blip": row}})
    assert "| blip | - | 0.0 | no | 1 | 0 | 0 | 0 | 0 |" in text
