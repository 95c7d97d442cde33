"""Missing bind-mount sources are named with their fix; the Ray token lives in the config folder
(not the cache a cleanup empties) and a token in the old cache place is carried over."""

import stat

from cluster import auth
from cluster.api_key import API_KEY_MOUNT
from cluster.bind_sources import missing_bind_sources
from cluster.spec import TOKEN_MOUNT
from onenode import paths


def test_each_missing_source_is_one_line_with_the_file_and_the_fix():
    mounts = [("/home/u/.config/onenode/ray_token", TOKEN_MOUNT), ("/etc/key", API_KEY_MOUNT),
              ("/data", "/data"), ("/hf", "/root/.cache/huggingface")]
    lines = missing_bind_sources("onenode-worker-1", mounts, exists=lambda p: p == "/hf")
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert lines[0].startswith("onenode-worker-1: /home/u/.config/onenode/ray_token (mounted "
                               "at /run/onenode/ray_token) is missing")
    assert "cannot restart" in lines[0] and "copy the head's Ray token" in lines[0]
    assert "--api-key-file" in lines[1] and "--replace" in lines[2]
    assert missing_bind_sources("n", mounts, exists=lambda p: True) == []


def test_config_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("ONENODE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert paths.onenode_config() == tmp_path / "onenode"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert paths.onenode_config().parts[-2:] == (".config", "onenode")
    monkeypatch.setenv("ONENODE_CONFIG", str(tmp_path / "x"))
    assert paths.onenode_config() == tmp_path / "x"


def test_a_token_in_the_old_cache_place_is_copied_to_the_config_folder(monkeypatch, tmp_path):
    old, new = tmp_path / "cache" / "ray_token", tmp_path / "config" / "ray_token"
    old.parent.mkdir()
    old.write_text("abc123")
    monkeypatch.setattr(auth, "LEGACY_TOKEN", old)
    monkeypatch.setattr(auth, "DEFAULT_TOKEN", new)
    assert auth.ensure_token(create=False) == new.resolve()
    assert new.read_text() == "abc123" and old.exists()  # running nodes still mount the old one
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    assert not auth.migrate_token(old, new)  # once only: the config copy wins from now on
