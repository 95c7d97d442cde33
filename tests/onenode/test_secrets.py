import pytest

from onenode.errors import ConfigError
from onenode.secrets import read_key_file


def test_read_key_file_strips_and_resolves(tmp_path):
    f = tmp_path / "key"
    f.write_text("  s3cret-key\n")
    assert read_key_file(f) == (f.resolve(), "s3cret-key")


@pytest.mark.parametrize("content", [None, "\n"])
def test_missing_or_empty_key_file_names_the_flag(tmp_path, content):
    f = tmp_path / "key"
    if content is not None:
        f.write_text(content)
    with pytest.raises(ConfigError, match="^--api-key-file "):
        read_key_file(f)


def test_secret_values_skip_paths_to_secret_files():
    from onenode.secrets import secret_values

    env = {"HF_TOKEN": "hf_x", "VLLM_API_KEY": "k1", "RAY_AUTH_TOKEN_PATH": "/run/t",
           "ONENODE_API_KEY_FILE": "/run/k", "NCCL_DEBUG": "INFO"}
    assert secret_values(env) == ["hf_x", "k1"]
