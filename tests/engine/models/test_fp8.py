"""FP8 block-quantized checkpoints (DeepSeek-V3's format): per-tile dequantization against a
manual one, a tiny synthetic FP8 Llama that generates HF's tokens on its dequantized weights (a
dropped scale breaks that), the refusal when dequantized weights would not fit, and which
quantization_config values are accepted."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import LLM, SamplingParams
from engine.model_config import model_config_from_hf
from engine.models import fp8
from engine.models.weights import SafetensorsReader
from onenode.errors import ModelLoadError, ResourceError
from tests.engine.oracle import hf_greedy, make_prompts
from tests.engine.tiny_models import make_llama


def quantize(w: torch.Tensor, block: tuple[int, int]):
    """FP8 e4m3 with one scale per tile, as DeepSeek's release stores it (scale_inv multiplies)."""
    br, bc = block
    rows, cols = -(-w.shape[0] // br), -(-w.shape[1] // bc)
    q = torch.empty(w.shape, dtype=torch.float8_e4m3fn)
    scale = torch.empty(rows, cols)
    for i in range(rows):
        for j in range(cols):
            tile = w[i * br:(i + 1) * br, j * bc:(j + 1) * bc]
            s = tile.abs().max().clamp(min=1e-12) / 448.0
            q[i * br:(i + 1) * br, j * bc:(j + 1) * bc] = (tile / s).to(torch.float8_e4m3fn)
            scale[i, j] = s
    return q, scale


def manual_dequant(q: torch.Tensor, scale: torch.Tensor, block: tuple[int, int]):
    out = torch.empty(q.shape)
    br, bc = block
    for i in range(q.shape[0]):
        for j in range(q.shape[1]):
            out[i, j] = q[i, j].float() * scale[i // br, j // bc]
    return out


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """300 x 260 in 128 x 128 tiles (partial tiles on both edges), saved as safetensors."""
    torch.manual_seed(0)
    q, scale = quantize(torch.randn(300, 260), (128, 128))
    path = tmp_path_factory.mktemp("fp8m")
    save_file({"w.weight": q, "w.weight_scale_inv": scale,
               "bare.weight": q.clone()}, str(path / "model.safetensors"))
    return path, q, scale, manual_dequant(q, scale, (128, 128))


def test_dequantize_per_tile_equals_the_manual_loop(matrix):
    _, q, scale, want = matrix
    assert torch.equal(fp8.dequantize(q, scale, (128, 128)), want)


@pytest.mark.parametrize("dim, start, end", [(None, None, None), (0, 100, 250), (0, 256, 300),
                                             (1, 130, 260), (1, 0, 64)])
def test_reader_dequantizes_only_the_requested_slice(matrix, dim, start, end):
    path, _, _, want = matrix
    reader = SafetensorsReader(path)
    got = reader.fetch("w.weight", dim, start, end)
    ref = want if dim is None else (want[start:end] if dim == 0 else want[:, start:end])
    assert got.dtype == torch.float32 and torch.equal(got, ref)
    assert "w.weight_scale_inv" not in reader.names()


def test_fp8_without_a_scale_is_refused(matrix):
    with pytest.raises(ModelLoadError, match="bare.weight is float8 without bare.weight_scale_inv"):
        SafetensorsReader(matrix[0]).fetch("bare.weight", None, None, None)


BLOCK = (16, 16)  # small tiles so the tiny model has many of them


@pytest.fixture(scope="module")
def fp8_llama(tmp_path_factory):
    """(FP8 checkpoint, HF checkpoint of the same weights dequantized by hand)."""
    src = make_llama(tmp_path_factory.mktemp("src"))
    ref, quant = tmp_path_factory.mktemp("ref"), tmp_path_factory.mktemp("fp8")
    tensors, deq, out = load_file(str(src / "model.safetensors")), {}, {}
    for name, t in tensors.items():
        if name.endswith("_proj.weight"):
            q, scale = quantize(t, BLOCK)
            out[name], out[fp8.scale_name(name)] = q, scale
            deq[name] = manual_dequant(q, scale, BLOCK)
        else:
            out[name] = deq[name] = t
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, ref / f.name)
            shutil.copy(f, quant / f.name)
    save_file(deq, str(ref / "model.safetensors"), metadata={"format": "pt"})
    save_file(out, str(quant / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((quant / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3",
                                  "activation_scheme": "dynamic", "weight_block_size": list(BLOCK)}
    (quant / "config.json").write_text(json.dumps(cfg))
    return quant, ref


def _generate(path, **kw):
    prompts = make_prompts(path, lengths=(4, 11))
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="float32", **kw)
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=8, ignore_eos=True),
                        use_tqdm=False)
    llm.shutdown()
    return prompts, [o.outputs[0].token_ids for o in outs]


def test_fp8_checkpoint_generates_hf_tokens_of_its_dequantized_weights(fp8_llama):
    quant, ref = fp8_llama
    prompts, tokens = _generate(quant)
    assert tokens == hf_greedy(ref, prompts, 8)


def test_fp8_under_tp2_slices_tiles_per_rank(fp8_llama):
    quant, ref = fp8_llama
    prompts, tokens = _generate(quant, tensor_parallel_size=2, distributed_executor_backend="mp")
    assert tokens == hf_greedy(ref, prompts, 8)


def test_dropping_the_scales_breaks_the_equality(fp8_llama, monkeypatch):
    """The test sees the dequantization: FP8 values without their tile scales diverge."""
    quant, ref = fp8_llama
    monkeypatch.setattr(fp8, "dequantize", lambda w, scale, block, row0=0, col0=0: w.float())
    prompts, tokens = _generate(quant)
    assert tokens != hf_greedy(ref, prompts, 8)


def test_weights_that_would_not_fit_are_refused_before_loading(fp8_llama):
    """A KV space as large as the machine's RAM leaves no room for the dequantized weights."""
    import os

    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    with pytest.raises(ResourceError) as err:
        LLM(str(fp8_llama[0]), kv_cache_space_gib=ram_gib + 1, dtype="float32")
    msg = str(err.value)
    assert "\n" not in msg and "this FP8 checkpoint dequantizes to" in msg
    assert "--tensor-parallel-size" in msg


def test_check_names_how_many_ranks_would_hold_it():
    with pytest.raises(ResourceError, match=r"about \d+ ranks of this size would hold it"):
        fp8.check_dequantized_fit(2**60, torch.bfloat16, torch.device("cpu"), 0.9, 1.0, 8, 2)
    fp8.check_dequantized_fit(2**20, torch.bfloat16, torch.device("cpu"), 0.9, 1.0, 1, 1)


@pytest.mark.parametrize("quant, ok", [
    ({"quant_method": "fp8", "weight_block_size": [128, 128]}, True),
    ({"quant_method": "fp8"}, False), ({"quant_method": "awq", "bits": 4}, False),
    ({"quant_method": "gptq"}, False)])
def test_quantization_config_fp8_blocks_accepted_others_refused(quant, ok):
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
           "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 512,
           "quantization_config": quant}
    if ok:
        m = model_config_from_hf(cfg)
        assert (m.quantization, m.weight_block_size) == ("fp8", (128, 128))
        return
    with pytest.raises(ModelLoadError, match="not supported; onenode loads unquantized or FP8"):
        model_config_from_hf(cfg)
