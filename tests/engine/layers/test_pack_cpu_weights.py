"""pack_cpu_weights: which CPUs pack, which weights go into oneDNN's layout, and that the packed
GEMMs agree."""

import pytest
import torch
from torch import nn

from engine.layers.embedding import ParallelLMHead, VocabParallelEmbedding
from engine.layers import linear
from engine.layers.linear import pack_cpu_weights
from onenode.errors import ConfigError

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN")


@pytest.fixture(autouse=True)
def onednn_layout(monkeypatch):
    monkeypatch.setenv("ONENODE_CPU_WEIGHT_LAYOUT", "onednn")


@pytest.mark.parametrize("vendor,layout", [("GenuineIntel", "plain"), ("AuthenticAMD", "onednn"),
                                           ("", "onednn")])
def test_auto_packs_where_mkl_is_not_intels_own(monkeypatch, vendor, layout):
    monkeypatch.setenv("ONENODE_CPU_WEIGHT_LAYOUT", "auto")
    monkeypatch.setattr(linear, "cpu_vendor", lambda: vendor)
    assert linear.weight_layout() == layout


def test_plain_layout_packs_nothing_and_a_bad_one_names_the_choices(monkeypatch):
    monkeypatch.setenv("ONENODE_CPU_WEIGHT_LAYOUT", "plain")
    m = _stage(embed=False, head=True, tied=False)
    assert pack_cpu_weights(m) == 0 and m.head.packed is None
    monkeypatch.setenv("ONENODE_CPU_WEIGHT_LAYOUT", "blocked")
    with pytest.raises(ConfigError, match="plain, onednn"):
        linear.weight_layout()


def _stage(embed: bool, head: bool, tied: bool) -> nn.Module:
    torch.manual_seed(0)
    m = nn.Module()
    m.embed = VocabParallelEmbedding(100, 32) if embed else None
    m.head = ParallelLMHead(100, 32) if head else None
    for mod in (m.embed, m.head):
        if mod is not None:
            mod.weight.data.normal_()
    if tied and embed and head:
        m.head.weight = m.embed.weight
    return m


def test_an_lm_head_tied_to_this_stages_embedding_stays_plain():
    m = _stage(embed=True, head=True, tied=True)
    assert pack_cpu_weights(m) == 0
    assert m.head.packed is None and m.head.weight.numel() == 100 * 32


@pytest.mark.parametrize("embed", [False, True])
def test_a_head_of_its_own_is_packed_and_gives_the_same_logits(embed):
    m = _stage(embed=embed, head=True, tied=False)
    x = torch.randn(11, 32)
    want = m.head.logits(x)
    assert pack_cpu_weights(m) == 1  # the last pipeline stage, or untied weights
    assert m.head.packed is not None and m.head.weight.numel() == 0
    torch.testing.assert_close(m.head.logits(x), want, rtol=1e-5, atol=1e-5)


def test_no_fast_paths_packs_nothing(monkeypatch):
    monkeypatch.setenv("ONENODE_CPU_KERNELS", "0")
    m = _stage(embed=False, head=True, tied=False)
    assert pack_cpu_weights(m) == 0 and m.head.packed is None
