"""Safetensors reading: a sharded checkpoint through model.safetensors.index.json (how every large
model ships), loaded token for token like HF; a missing shard is one line."""

import shutil

import pytest

from engine import LLM, SamplingParams
from engine.models.weights import SafetensorsReader
from onenode.errors import ModelLoadError
from tests.engine.oracle import hf_greedy, make_prompts
from tests.engine.tiny_models import make_llama


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """The tiny Llama re-saved in shards of at most 40 kB."""
    from transformers import AutoModelForCausalLM

    whole = make_llama(tmp_path_factory.mktemp("whole"))
    out = tmp_path_factory.mktemp("sharded")
    AutoModelForCausalLM.from_pretrained(str(whole)).save_pretrained(str(out),
                                                                     max_shard_size="40KB")
    for f in whole.iterdir():
        if not f.name.endswith(".safetensors") and not (out / f.name).exists():
            shutil.copy(f, out / f.name)
    return out


def test_sharded_checkpoint_loads_token_for_token(sharded):
    shards = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert len(shards) > 3 and (sharded / "model.safetensors.index.json").exists()
    prompts = make_prompts(sharded, lengths=(5, 12))
    llm = LLM(str(sharded), kv_cache_space_gib=0.05, dtype="float32")
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    outs = llm.generate(prompts, params, use_tqdm=False)
    llm.shutdown()
    assert [o.outputs[0].token_ids for o in outs] == hf_greedy(sharded, prompts, 8)


def test_reader_sees_every_shard(sharded):
    import json

    weight_map = json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"]
    assert SafetensorsReader(sharded).names() == set(weight_map)


def test_missing_shard_is_one_line(sharded, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(sharded, partial)
    victim = sorted(partial.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(ModelLoadError, match=f"first: {victim.name}.*finish the download"):
        SafetensorsReader(partial)
