import pytest

from cluster import api_key
from onenode.errors import ConfigError


def test_serve_address_defaults_and_last_flag_wins():
    assert api_key.serve_address([]) == ("0.0.0.0", 8000)
    assert api_key.serve_address(["--host", "127.0.0.1", "--port=9000", "-pp", "2"]) == \
        ("127.0.0.1", 9000)
    assert api_key.serve_address(["--host=a", "--host", "::1"]) == ("::1", 8000)


@pytest.mark.parametrize("host_net,args,published,expected", [
    (True, [], [], "0.0.0.0:8000 (host network)"),
    (True, ["--host", "10.0.0.1"], [], "10.0.0.1:8000 (host network)"),
    (True, ["--host", "127.0.0.1"], [], None),
    (True, ["--host", "localhost"], [], None),
    (False, [], ["127.0.0.1"], None),  # the simulated cluster: published on host loopback
    (False, [], [], None),  # bridge, not published: this host only
    (False, [], [""], "0.0.0.0:8000 (published)"),
    (False, [], ["127.0.0.1", "10.0.0.5"], "10.0.0.5:8000 (published)"),
])
def test_exposure(host_net, args, published, expected):
    assert api_key.exposure(host_net, args, published) == expected


def test_open_api_beyond_loopback_is_refused_naming_api_key_file():
    with pytest.raises(ConfigError) as err:
        api_key.check_serving("0.0.0.0:8000 (host network)", False, False, "fix")
    assert "--api-key-file" in str(err.value) and "\n" not in str(err.value)
    assert "--allow-unauthenticated" in str(err.value)


def test_allow_unauthenticated_warns_and_keys_or_loopback_pass():
    assert "without a key" in api_key.check_serving("0.0.0.0:8000", False, True, "fix")
    assert api_key.check_serving("0.0.0.0:8000", True, False, "fix") is None
    assert api_key.check_serving(None, False, False, "fix") is None


@pytest.mark.parametrize("env,args,expected", [
    ({"VLLM_API_KEY": "k"}, [], True), ({"ONENODE_API_KEY": "k"}, [], True),
    ({"ONENODE_API_KEY_FILE": "/run/k"}, [], True), ({}, ["--api-key-file", "/k"], True),
    ({}, ["--api-key-file=/k"], True), ({"VLLM_API_KEY": ""}, [], False), ({}, [], False),
])
def test_has_key(env, args, expected):
    assert api_key.has_key(env, args) is expected


@pytest.mark.parametrize("args", [["--api-key", "k"], ["--api-key=k"]])
def test_a_key_in_argv_is_refused(args):
    with pytest.raises(ConfigError, match="--api-key-file"):
        api_key.refuse_key_in_argv(args)
    api_key.refuse_key_in_argv(["--api-key-file", "/k"])
