"""engine.executor.ray_inventory: the guard around Ray's private per-node resources API."""

import sys
import types

from engine.executor import ray_inventory


def test_the_private_api_exists_in_the_pinned_ray():
    assert callable(ray_inventory.private_available_resources_reader())


def test_a_ray_without_the_private_api_is_named_not_a_crash(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray._private.state", types.ModuleType("ray._private.state"))
    said = []
    assert ray_inventory.private_available_resources_reader(warn=said.append) is None
    import ray

    assert len(said) == 1 and f"ray {ray.__version__}" in said[0]
    assert ray_inventory.TESTED_RAY in said[0] and "total, not free" in said[0]
