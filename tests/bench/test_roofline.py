"""The rooflines' arithmetic, the bandwidth probe, and the bench's --device check (no timing)."""

import pytest
import torch
from typer.testing import CliRunner

from bench.cli import bench_app
from bench.roofline import decode_bandwidth_gbs, memory_bandwidth_gbs, model_gflops


def test_decode_reads_every_weight_once_per_token():
    # 135M fp32 parameters at 30 tokens/s: 16.2 GB/s
    assert decode_bandwidth_gbs(135_000_000, 4, 30.0) == pytest.approx(16.2)
    assert model_gflops(1_000_000_000, 10) == 20.0


def test_memory_bandwidth_probe_gives_a_positive_rate():
    assert memory_bandwidth_gbs("cpu", mib=8, repeats=2) > 0


@pytest.mark.parametrize("device,message", [("tpu", "use auto, cpu or cuda"),
                                            ("cuda", "no CUDA device here")])
def test_a_device_the_bench_cannot_use_is_one_clear_line(device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(bench_app, ["throughput", "--device", device])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output
