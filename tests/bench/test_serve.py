"""Pure parts of `onenode bench serve`: percentiles and the per-level summary."""

from bench.serve import RequestResult, percentiles, summarize


def test_percentiles_nearest_rank():
    p = percentiles(list(range(1, 101)))
    assert (p["p50"], p["p90"], p["p99"]) == (50, 90, 99)
    assert p["mean"] == 50.5
    assert percentiles([])["p99"] == 0.0
    assert percentiles([0.002], 1000)["p50"] == 2.0


def test_summary_counts_only_completed_requests():
    ok = RequestResult(True, ttft_s=0.1, e2e_s=1.0, itls_s=(0.01, 0.03), prompt_tokens=10,
                       output_tokens=3)
    bad = RequestResult(False, error="HTTP 503")
    s = summarize([ok, ok, bad], concurrency=8, duration_s=2.0)
    assert (s["completed"], s["failed"], s["errors"]) == (2, 1, ["HTTP 503"])
    assert s["output_tok_s"] == 3.0 and s["total_tok_s"] == 13.0 and s["requests_s"] == 1.0
    assert s["ttft_ms"]["p50"] == 100.0 and s["itl_ms"]["p99"] == 30.0
