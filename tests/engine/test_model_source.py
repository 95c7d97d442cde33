"""engine.model_source: hub ids resolve through huggingface_hub's cache layout (the snapshot that
refs/main names, not the alphabetically last one); an id that is neither local nor cached fails
with one line that says what to do."""

import pytest

from engine.model_source import resolve_model
from onenode.errors import ModelLoadError
from tests.engine.tiny_models import make_llama

MAIN, OLD = "0a" * 20, "ff" * 20  # refs/main names the alphabetically *first* snapshot


def _hub_cache(home, repo="acme/tiny"):
    repo_dir = home / "hub" / f"models--{repo.replace('/', '--')}"
    make_llama(repo_dir / "snapshots" / MAIN, num_layers=1)
    (repo_dir / "snapshots" / OLD).mkdir(parents=True)  # a stale revision: no weights at all
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(MAIN)
    return repo_dir


def test_a_cached_hub_id_is_the_snapshot_refs_main_names(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    repo_dir = _hub_cache(tmp_path)
    src = resolve_model("acme/tiny")
    assert src.path == repo_dir / "snapshots" / MAIN and src.model_config.num_layers == 1


def test_an_id_neither_local_nor_cached_fails_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # here the hub is never reachable
    with pytest.raises(ModelLoadError) as err:
        resolve_model("acme/not-there")
    text = str(err.value)
    assert "\\n" not in text and "not in the HF cache" in text and str(tmp_path / "hub") in text
    assert "HF_TOKEN" in text and "same path on every node" in text
