import pytest

from cluster import docker_values as dv
from onenode.errors import ConfigError


@pytest.mark.parametrize("text,expected", [
    ("/dev/infiniband", "/dev/infiniband:/dev/infiniband:rwm"),
    ("/dev/x:/dev/y", "/dev/x:/dev/y:rwm"), ("/dev/x:/dev/y:rwm", "/dev/x:/dev/y:rwm"),
    ("/dev/x:r", "/dev/x:/dev/x:r"),
    ("/dev/nvidia0:/dev/nvidia0:rw", "/dev/nvidia0:/dev/nvidia0:rw"),
])
def test_device_forms(text, expected):
    assert dv.device(text) == expected


@pytest.mark.parametrize("text", ["dev/x", "/dev/x:/dev/y:rwx", "/a:/b:/c", "/dev/x:", ""])
def test_bad_devices(text):
    with pytest.raises(ConfigError, match="--device"):
        dv.device(text)


@pytest.mark.parametrize("text,expected", [
    ("memlock=-1", ("memlock", -1, -1)), ("nofile=1024:2048", ("nofile", 1024, 2048)),
    ("stack=67108864", ("stack", 67108864, 67108864)), ("memlock=-1:-1", ("memlock", -1, -1)),
    ("memlock=1024:-1", ("memlock", 1024, -1)),
])
def test_ulimit_forms(text, expected):
    assert dv.ulimit(text) == expected


@pytest.mark.parametrize("text", ["memlock", "nofile=a", "bogus=1", "nofile=10:5", "nofile=-1:5"])
def test_bad_ulimits(text):
    with pytest.raises(ConfigError, match="--ulimit"):
        dv.ulimit(text)


@pytest.mark.parametrize("text,expected", [
    ("8000", ("8000/tcp", "", None)), ("8080:8000", ("8000/tcp", "", 8080)),
    ("127.0.0.1:8000:8000", ("8000/tcp", "127.0.0.1", 8000)),
    ("127.0.0.1::8000", ("8000/tcp", "127.0.0.1", None)),
    ("[::1]:8000:8000/udp", ("8000/udp", "::1", 8000)),
])
def test_publish_forms(text, expected):
    assert dv.publish(text) == expected


@pytest.mark.parametrize("text", ["80-90:80", "a:80", "1.2.3:80:80", "80:80/icmp", "0", ""])
def test_bad_publish(text):
    with pytest.raises(ConfigError, match="-p"):
        dv.publish(text)


def test_add_host_restart_label_cpus():
    assert dv.add_host("node1:10.0.0.2") == ("node1", "10.0.0.2")
    assert dv.add_host("node1=fd00::2") == ("node1", "fd00::2")
    assert dv.add_host("gw:host-gateway") == ("gw", "host-gateway")
    assert dv.restart("on-failure:3") == ("on-failure", 3) and dv.restart("no") == ("no", 0)
    with pytest.raises(ConfigError, match="--restart"):
        dv.restart("always:3")
    assert dv.label("a=b=c") == ("a", "b=c") and dv.label("flag") == ("flag", "")
    assert dv.cpus("0.5") == 500_000_000
    assert dv.volume("/a:/b:rw") == ("/a", "/b", False)
    assert dv.namespace("--ipc", "container:x", dv.IPC_MODES) == "container:x"


def _lines(*texts):
    return [("vars.env", i, t) for i, t in enumerate(texts, 1)]


def test_env_file_follows_docker():
    lines = _lines("\ufeffA=1", "# comment", "", "   ", "B= spaced value ", "C=\"quoted\"",
                   "FROM_SHELL", "UNSET_IN_SHELL", "  D=4")
    env = dv.parse_env([], lines, {"FROM_SHELL": "shell"})
    assert env == {"A": "1", "B": " spaced value ", "C": "\"quoted\"", "FROM_SHELL": "shell",
                   "D": "4"}


def test_e_wins_over_env_file_and_bare_e_takes_the_shell_value():
    env = dv.parse_env(["A=2", "HOME_VAR", "GONE"], _lines("A=1"), {"HOME_VAR": "h"})
    assert env == {"A": "2", "HOME_VAR": "h"}


@pytest.mark.parametrize("item", ["=value", "", "A B=1"])
def test_empty_or_bad_names_are_errors(item):
    with pytest.raises(ConfigError, match="-e"):
        dv.parse_env([item], [], {})


def test_bad_env_file_line_names_file_and_line():
    with pytest.raises(ConfigError, match="--env-file vars.env line 2"):
        dv.parse_env([], _lines("A=1", "=oops"), {})
