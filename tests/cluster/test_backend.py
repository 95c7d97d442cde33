"""The docker-py kwargs built from a spec (pure: no daemon)."""

import json

from cluster.args import parse_run_cluster
from cluster.backend import run_kwargs
from cluster.spec import build_spec

BASE = ["img", "10.0.0.1", "--head", "/hf"]


def kwargs_for(extra, gpus=None, ports=()):
    args = parse_run_cluster(BASE + extra)
    return run_kwargs(build_spec(args, {}, "10.0.0.1", "/tok", gpus, ports))


def test_host_network_kwargs():
    kw = kwargs_for(["--ipc", "host", "--ulimit", "memlock=-1", "--device", "/dev/infiniband",
                     "--cap-add", "IPC_LOCK", "--privileged", "--restart", "on-failure:2",
                     "--cpus", "2", "-m", "8g", "--add-host", "a:10.0.0.9"])
    assert kw["network_mode"] == "host" and "ports" not in kw and "network" not in kw
    assert kw["ipc_mode"] == "host" and kw["privileged"] and kw["cap_add"] == ["IPC_LOCK"]
    assert kw["ulimits"] == [{"Name": "memlock", "Soft": -1, "Hard": -1}]
    assert kw["devices"] == ["/dev/infiniband:/dev/infiniband:rwm"]
    assert kw["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert kw["nano_cpus"] == 2 * 10**9 and kw["mem_limit"] == 8 << 30
    assert kw["extra_hosts"] == {"a": "10.0.0.9"}
    assert "runtime" not in kw and "user" not in kw  # unset options are left to Docker
    json.dumps(kw)  # what --dry-run prints


def test_bridge_network_ports_and_fixed_ip():
    kw = kwargs_for(["--network", "net1", "--ip", "172.30.1.10", "-p", "9000:9000"],
                    ports=(("8000/tcp", "127.0.0.1", 8123),))
    assert kw["network"] == "net1" and "network_mode" not in kw
    assert kw["ports"] == {"8000/tcp": ("127.0.0.1", 8123), "9000/tcp": ("", 9000)}
    assert kw["networking_config"] == {"net1": {"IPAMConfig": {"IPv4Address": "172.30.1.10"}}}


def test_same_port_published_twice_is_a_list():
    kw = kwargs_for(["--network", "n", "-p", "127.0.0.1:80:80", "-p", "10.0.0.1:80:80"])
    assert kw["ports"] == {"80/tcp": [("127.0.0.1", 80), ("10.0.0.1", 80)]}


def test_gpu_requests():
    assert kwargs_for([], gpus="all")["device_requests"][0]["Count"] == -1
    assert kwargs_for(["--gpus", "2"])["device_requests"][0]["Count"] == 2
    assert kwargs_for(["--gpus", "device=0,1"])["device_requests"][0]["DeviceIDs"] == ["0", "1"]
    assert "device_requests" not in kwargs_for([])
