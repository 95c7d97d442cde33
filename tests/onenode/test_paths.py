"""onenode.paths: the Hugging Face cache follows huggingface_hub's rule."""

from pathlib import Path

from onenode import paths


def test_hf_home_follows_huggingface_hub(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert paths.hf_home() == Path.home() / ".cache" / "huggingface"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.hf_home() == tmp_path / "xdg" / "huggingface"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert paths.hf_home() == tmp_path / "hf" and paths.hf_hub_cache() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert paths.hf_hub_cache() == tmp_path / "elsewhere"


def test_cluster_up_and_the_demo_default_to_that_cache(monkeypatch, tmp_path):
    from cluster import local
    from engine import demo_model

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert local.default_hf_home() == tmp_path
    assert demo_model.demo_model_dir() == tmp_path / "models" / "SmolLM2-135M-Instruct"
