"""The generic weight loader: name maps, packed shards, tied weights, missing tensors."""

import pytest
import torch
from torch import nn

from engine.models.loader import load_model_weights, param_targets
from onenode.errors import ModelLoadError


class Reader:
    def __init__(self, tensors):
        self.tensors = tensors

    def names(self):
        return set(self.tensors)

    def fetch(self, name, dim, start, end):
        t = self.tensors[name]
        if dim is None:
            return t
        return t[start:end] if dim == 0 else t[:, start:end]


class Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(4, 2), requires_grad=False)
        self.weight.weight_loader = self.weight_loader
        self.weight.shard_ids = ("a", "b")

    def weight_loader(self, param, fetch, shard_id=None):
        lo = 0 if shard_id == "a" else 2
        param.data[lo:lo + 2].copy_(fetch(0, 0, 2))


class Tiny(nn.Module):
    checkpoint_prefixes = ("model.",)
    packed_modules_mapping = {"a_proj": ("ab_proj", "a"), "b_proj": ("ab_proj", "b")}
    tied_weights = {"head.weight": "embed.weight"}

    def __init__(self):
        super().__init__()
        self.ab_proj = Packed()
        self.embed = nn.Embedding(3, 2)
        self.head = nn.Linear(2, 3, bias=False)


def test_maps_prefixes_packed_shards_and_tied_weights():
    assert param_targets(Tiny(), "model.a_proj.weight") == [("ab_proj.weight", "a")]
    assert param_targets(Tiny(), "model.embed.weight") == [("embed.weight", None),
                                                           ("head.weight", None)]


def test_loads_every_parameter_once():
    model = Tiny()
    emb = torch.arange(6.0).view(3, 2)
    load_model_weights(model, Reader({"model.a_proj.weight": torch.ones(2, 2),
                                      "model.b_proj.weight": 2 * torch.ones(2, 2),
                                      "model.embed.weight": emb, "model.unused": torch.ones(1)}))
    assert model.ab_proj.weight[:2].eq(1).all() and model.ab_proj.weight[2:].eq(2).all()
    assert torch.equal(model.head.weight, emb)


def test_missing_shard_and_wrong_shape_are_named():
    with pytest.raises(ModelLoadError, match=r"ab_proj.weight \(b\) are missing"):
        load_model_weights(Tiny(), Reader({"model.a_proj.weight": torch.ones(2, 2),
                                           "model.embed.weight": torch.ones(3, 2)}))
    with pytest.raises(ModelLoadError, match=r"model.embed.weight: .*shape \(2, 2\)"):
        load_model_weights(Tiny(), Reader({"model.embed.weight": torch.ones(2, 2)}))
