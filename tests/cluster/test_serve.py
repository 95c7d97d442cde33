"""`cluster serve`'s key check and masking, with the Docker seam faked (pure)."""

import pytest

from cluster import serve
from cluster.serve import api_key_to_env, parallel_sizes
from onenode.errors import ClusterError, ConfigError

KEY = "sk-cluster-serve-5e2a"


class FakeContainer:
    def __init__(self, network_mode, bindings, env):
        self.attrs = {"HostConfig": {"NetworkMode": network_mode, "PortBindings": bindings},
                      "Config": {"Env": [f"{k}={v}" for k, v in env.items()]}}


@pytest.fixture
def head(monkeypatch):
    def make(network_mode="host", bindings=None, env=None, log=""):
        container = FakeContainer(network_mode, bindings or {}, env or {})
        monkeypatch.setattr(serve.backend, "get", lambda c, name: container)

        def exec_in(c, name, cmd):
            if cmd[0] == "cat":
                return 0, KEY + "\n"
            return (1, "") if cmd[0] == "pgrep" else (0, "")

        monkeypatch.setattr(serve.backend, "exec_in", exec_in)
        monkeypatch.setattr(serve.backend, "logs_of_file", lambda c, name, path: log)
        return container
    return make


def test_host_network_head_without_key_is_refused(head):
    head()
    with pytest.raises(ConfigError, match="--api-key-file"):
        serve.check_key(None, "h", [], False)


def test_loopback_published_bridge_needs_no_key(head):
    head("net1", {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]})
    assert serve.check_key(None, "h", [], False) == []
    head("net1", {"8000/tcp": [{"HostIp": "", "HostPort": "8000"}]})
    with pytest.raises(ConfigError, match="0.0.0.0:8000 \\(published\\)"):
        serve.check_key(None, "h", [], False)


def test_key_file_content_and_secret_env_are_masked(head, capsys):
    head(env={"ONENODE_API_KEY_FILE": "/run/onenode/api_key", "HF_TOKEN": "hf_abcdef",
              "RAY_AUTH_TOKEN_PATH": "/run/onenode/ray_token"})
    secrets = serve.check_key(None, "h", [], False)
    assert set(secrets) == {KEY, "hf_abcdef"}  # paths to secret files are no secrets


def test_error_tail_masks_the_key(head, monkeypatch):
    head(env={"ONENODE_API_KEY_FILE": "/run/onenode/api_key"},
         log=f"loading\nbad key {KEY} here\nexit")
    secrets = serve.check_key(None, "h", [], False)
    monkeypatch.setattr(serve, "START_GRACE_S", 0)
    with pytest.raises(ClusterError) as err:
        serve._wait_healthy(None, "h", "http://127.0.0.1:1", 5, secrets)
    assert KEY not in str(err.value) and "bad key *** here" in str(err.value)


def test_streamed_log_is_masked(monkeypatch, capsys):
    import threading

    monkeypatch.setattr(serve.backend, "exec_stream",
                        lambda c, name, cmd: iter([f"key={KEY}\n".encode()]))
    serve._stream_log(None, "h", threading.Event(), [KEY])
    assert capsys.readouterr().out == "key=***\n"


def test_allow_unauthenticated_warns(head, capsys):
    head()
    assert serve.check_key(None, "h", [], True) == []


def test_api_key_leaves_argv_for_the_env():
    args, env = api_key_to_env(["/m", "--api-key", "sk-1", "-pp", "3"])
    assert args == ["/m", "-pp", "3"] and env == {"ONENODE_API_KEY": "sk-1"}
    assert api_key_to_env(["/m", "--api-key=sk-2"]) == (["/m"], {"ONENODE_API_KEY": "sk-2"})
    assert api_key_to_env(["/m"]) == (["/m"], {})


def test_parallel_sizes_multiplies_tp_and_pp():
    assert parallel_sizes(["-tp", "2", "--pipeline-parallel-size=3"]) == 6
    assert parallel_sizes(["--data-parallel-size", "3", "-pp", "2"]) == 6
