"""One weight loader for every model (nano-vllm's shape): each parameter carries a `weight_loader`
that knows how to take this rank's slice of a checkpoint tensor; models declare name maps only.

A model declares:
- `checkpoint_prefixes`: leading parts of checkpoint names to drop ("model.", "transformer.");
- `packed_modules_mapping`: checkpoint sub-name -> (module sub-name, shard id), where a shard id
  says which logical matrix of a packed layer (q/k/v, gate/up) the tensor fills; None renames;
- `tied_weights`: param name -> the checkpoint-side name it is read from when embeddings are tied;
- `expert_modules_mapping` (MoE): one expert's matrix name -> (stacked parameter, part), so
  `...experts.<id>.<matrix>.weight` fills the stacked parameter with shard id (id, part).

Tensors of layers that another pipeline stage owns map to no parameter and are never read.
"""

import re

from onenode.errors import ModelLoadError

_EXPERT = re.compile(r"^(.*\.experts)\.(\d+)\.(\w+)\.weight$")


def default_weight_loader(param, fetch, shard_id=None) -> None:
    """Whole tensor, replicated on every rank (norms, position tables, small projections)."""
    full = fetch(None, None, None)
    if tuple(full.shape) != tuple(param.shape):
        raise ModelLoadError(f"checkpoint tensor has shape {tuple(full.shape)}, the model "
                             f"expects {tuple(param.shape)}; is config.json right for these "
                             f"weights?")
    param.data.copy_(full)


def param_targets(model, ckpt_name: str) -> list[tuple[str, object]]:
    """Model parameter names (with shard ids) that checkpoint tensor `ckpt_name` fills."""
    name = ckpt_name
    for prefix in getattr(model, "checkpoint_prefixes", ()):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    expert = _expert_target(model, name)
    if expert is not None:
        return [expert]
    shard = None
    for key, (module, shard_id) in getattr(model, "packed_modules_mapping", {}).items():
        if key in name:
            name, shard = name.replace(key, module), shard_id
            break
    targets = [(name, shard)]
    for tied, source in getattr(model, "tied_weights", {}).items():
        if name == source:
            targets.append((tied, None))
    return targets


def _expert_target(model, name: str):
    """(stacked parameter name, (expert id, part)) for one routed expert's tensor; HF's own
    stacked `experts.gate_up_proj` / `experts.down_proj` keep their names (shard None)."""
    mapping = getattr(model, "expert_modules_mapping", None)
    if not mapping:
        return None
    m = _EXPERT.match(name)
    if m and m.group(3) in mapping:
        param, part = mapping[m.group(3)]
        return f"{m.group(1)}.{param}", (int(m.group(2)), part)
    if name.endswith((".experts.gate_up_proj", ".experts.down_proj")):
        return name, None
    return None


def load_model_weights(model, reader) -> None:
    """Fill every parameter of `model` from `reader` (`names()`, `fetch(name, dim, start, end)`),
    then fail naming the first parameter nothing filled."""
    params = dict(model.named_parameters())  # tied parameters appear once
    pending = {n: set(getattr(p, "shard_ids", (None,))) for n, p in params.items()}
    for ckpt_name in sorted(reader.names()):
        for name, shard in param_targets(model, ckpt_name):
            param = params.get(name)
            if param is None:
                continue  # another stage's layer, or a tensor this model does not use
            loader = getattr(param, "weight_loader", default_weight_loader)

            def fetch(dim, start, end, _n=ckpt_name):
                return reader.fetch(_n, dim, start, end)

            try:
                loader(param, fetch, shard)
            except ModelLoadError as exc:
                raise ModelLoadError(f"{ckpt_name}: {exc}") from None
            pending[name] = set() if shard is None else pending[name] - {shard}
    missing = [f"{n}" + (f" ({', '.join(map(str, s))})" if s != {None} else "")
               for n, s in pending.items() if s]
    if missing:
        raise ModelLoadError(f"weights for {missing[0]} are missing from the checkpoint "
                             f"({len(missing)} parameters in all); is the config.json "
                             f"architecture right for these weights?")
