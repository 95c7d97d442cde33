"""The throughput bench's arithmetic: paired per-repeat ratios, median and spread (no timing)."""

import json
import mmap

from bench.report import write_spread_report
from bench.throughput import SINGLE_OUT, _summary, spread


def test_ratios_are_paired_per_repeat_and_summarised():
    runs = [{"batched_s": 10.0, "hf_batched_s": 20.0, "single_s": 4.0, "hf_single_s": 5.0,
             "load_s": 1.0, "peak_rss_mib": 900.0, "rss_growth_per_request_mib": 2.0},
            {"batched_s": 40.0, "hf_batched_s": 40.0, "single_s": 8.0, "hf_single_s": 8.0,
             "load_s": 3.0, "peak_rss_mib": 1000.0, "rss_growth_per_request_mib": 3.0},
            {"batched_s": 20.0, "hf_batched_s": 30.0, "single_s": 4.0, "hf_single_s": 4.0,
             "load_s": 2.0, "peak_rss_mib": 950.0, "rss_growth_per_request_mib": 1.0}]
    res = _summary(runs, prompt_toks=300, out_toks=100, skip_hf=False)
    assert res["batched_ratio"] == {"median": 1.5, "min": 1.0, "max": 2.0, "all": [2.0, 1.0, 1.5]}
    assert res["onenode_output_tok_s"]["median"] == 5.0
    assert res["onenode_single_stream_tok_s"]["max"] == SINGLE_OUT / 4.0
    assert res["onenode_peak_rss_mib"]["median"] == 950.0
    assert res["onenode_rss_growth_per_request_mib"]["max"] == 3.0
    assert "hf_output_tok_s" not in _summary(runs, 300, 100, skip_hf=True)


def test_peak_rss_sees_memory_touched_inside_the_block():
    from bench.rss import PeakRss

    # A fresh anonymous mapping: a bytearray could reuse heap pages that earlier tests in this
    # process left resident, and then RSS would not grow.
    with PeakRss(interval_s=0.01) as p:
        block = mmap.mmap(-1, 64 * 2**20)
        for offset in range(0, len(block), 4096):
            block[offset] = 1  # touched: resident
    assert p.start > 0 and p.peak - p.start >= 48 * 2**20
    block.close()


def test_spread_report_writes_json_and_png(tmp_path):
    series = {"onenode batched": spread([3.0, 4.0, 5.0]), "HF batched": spread([2.0, 2.5, 3.0])}
    json_path, png_path = write_spread_report({"x": 1}, tmp_path, "t", series, "tok/s")
    assert json.loads(json_path.read_text()) == {"x": 1}
    assert png_path.stat().st_size > 0
