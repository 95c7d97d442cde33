"""The throughput bench's arithmetic: paired per-repeat ratios, median and spread (no timing)."""

import json

from bench.report import write_spread_report
from bench.throughput import SINGLE_OUT, _summary, spread


def test_ratios_are_paired_per_repeat_and_summarised():
    runs = [{"batched_s": 10.0, "hf_batched_s": 20.0, "single_s": 4.0, "hf_single_s": 5.0,
             "load_s": 1.0},
            {"batched_s": 40.0, "hf_batched_s": 40.0, "single_s": 8.0, "hf_single_s": 8.0,
             "load_s": 3.0},
            {"batched_s": 20.0, "hf_batched_s": 30.0, "single_s": 4.0, "hf_single_s": 4.0,
             "load_s": 2.0}]
    res = _summary(runs, prompt_toks=300, out_toks=100, skip_hf=False)
    assert res["batched_ratio"] == {"median": 1.5, "min": 1.0, "max": 2.0, "all": [2.0, 1.0, 1.5]}
    assert res["onenode_output_tok_s"]["median"] == 5.0
    assert res["onenode_single_stream_tok_s"]["max"] == SINGLE_OUT / 4.0
    assert "hf_output_tok_s" not in _summary(runs, 300, 100, skip_hf=True)


def test_spread_report_writes_json_and_png(tmp_path):
    series = {"onenode batched": spread([3.0, 4.0, 5.0]), "HF batched": spread([2.0, 2.5, 3.0])}
    json_path, png_path = write_spread_report({"x": 1}, tmp_path, "t", series, "tok/s")
    assert json.loads(json_path.read_text()) == {"x": 1}
    assert png_path.stat().st_size > 0
