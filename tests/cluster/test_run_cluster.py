"""`run_cluster` as operators call it: a real process, no Docker needed (DOCKER_HOST points at
nothing, so any daemon call would fail)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.args import OPTIONS

REPO = Path(__file__).resolve().parents[2]
HEAD = ["onenode:test", "10.0.0.1", "--head"]


def run_cluster(*argv: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), ONENODE_CACHE=str(tmp_path / "cache"),
                    ONENODE_CONFIG=str(tmp_path / "config"),
                    DOCKER_HOST="unix:///nonexistent/docker.sock", **env)
    return subprocess.run([sys.executable, "-m", "cluster.run_cluster", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=full_env, check=False)


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_every_option_and_exits_0(tmp_path, flag):
    res = run_cluster(flag, tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: run_cluster IMAGE HEAD_IP --head|--worker HF_HOME")
    for opt in OPTIONS:
        assert all(name in res.stdout for name in opt.names), opt.names


def test_dry_run_with_every_option_contains_them_all(tmp_path):
    env_file = tmp_path / "vars.env"
    env_file.write_text("# NCCL over IB\nNCCL_IB_HCA=mlx5\nFROM_SHELL\n")
    key = tmp_path / "api_key"
    key.write_text("sk-dry-run-never-shown-1234\n")
    res = run_cluster(
        *HEAD, str(tmp_path), "--dry-run", "-e", "VLLM_HOST_IP=10.0.0.1", "-e",
        "HF_TOKEN=hf_secret_never_shown", "--env-file", str(env_file), "-v", "/models:/models:ro",
        "-p", "127.0.0.1:9000:9000", "--ipc=host", "--pid", "host", "--runtime", "nvidia",
        "--security-opt", "seccomp=unconfined", "--label", "team=ml", "--add-host",
        "node2:10.0.0.2", "--hostname", "gpu1", "--restart", "always", "--memory", "64g",
        "--cpus", "8", "--cpuset-cpus", "0-7", "--user", "0:0", "--workdir", "/work",
        "--ulimit", "memlock=-1", "--ulimit", "nofile=1024:2048", "--device", "/dev/infiniband",
        "--device", "/dev/x:/dev/y:rw", "--cap-add", "IPC_LOCK", "--privileged", "--shm-size",
        "16g", "--gpus", "all", "--name", "n1", "--api-key-file", str(key), "--serve", "/m",
        "--serve-args", "-pp 2", tmp_path=tmp_path, FROM_SHELL="yes")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    kw = out["containers.run"]
    env = kw["environment"]
    assert env["NCCL_IB_HCA"] == "mlx5" and env["FROM_SHELL"] == "yes"
    assert env["VLLM_HOST_IP"] == "10.0.0.1" and env["HF_TOKEN"] == "***"
    assert env["ONENODE_API_KEY_FILE"] == "/run/onenode/api_key"
    assert env["RAY_AUTH_MODE"] == "token"
    assert {(m["Source"], m["Target"], m["ReadOnly"]) for m in kw["mounts"]} >= {
        ("/models", "/models", True), (str(key.resolve()), "/run/onenode/api_key", True)}
    expected = {"ipc_mode": "host", "pid_mode": "host", "runtime": "nvidia",
                "security_opt": ["seccomp=unconfined"], "extra_hosts": {"node2": "10.0.0.2"},
                "hostname": "gpu1", "restart_policy": {"Name": "always", "MaximumRetryCount": 0},
                "mem_limit": 64 << 30, "nano_cpus": 8 * 10**9, "cpuset_cpus": "0-7",
                "user": "0:0", "working_dir": "/work", "cap_add": ["IPC_LOCK"],
                "privileged": True, "shm_size": 16 << 30, "name": "n1", "network_mode": "host",
                "devices": ["/dev/infiniband:/dev/infiniband:rwm", "/dev/x:/dev/y:rw"],
                "ulimits": [{"Name": "memlock", "Soft": -1, "Hard": -1},
                            {"Name": "nofile", "Soft": 1024, "Hard": 2048}]}
    assert {k: kw[k] for k in expected} == expected
    assert kw["labels"]["team"] == "ml" and kw["device_requests"][0]["Count"] == -1
    assert out["exec_run"]["cmd"][-2:] == ["-pp", "2"]
    # host network: Docker drops -p; the dry-run shows exactly what is sent
    assert "ports" not in kw
    assert "sk-dry-run-never-shown" not in res.stdout + res.stderr
    assert "hf_secret_never_shown" not in res.stdout + res.stderr
    assert not (tmp_path / "config" / "ray_token").exists()  # a dry run creates nothing


def test_serve_on_host_network_without_a_key_is_refused(tmp_path):
    res = run_cluster(*HEAD, str(tmp_path), "--serve", "/m", tmp_path=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith("error: the API would listen on 0.0.0.0:8000 (host network)")
    assert "--api-key-file" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "docker" not in res.stderr.lower().split("(host network)")[0]


@pytest.mark.parametrize("extra", [["--allow-unauthenticated"], ["-e", "VLLM_API_KEY"],
                                   ["--serve-args", "--host 127.0.0.1"]])
def test_serve_goes_on_with_a_key_loopback_or_explicit_opt_out(tmp_path, extra):
    res = run_cluster(*HEAD, str(tmp_path), "--serve", "/m", "--dry-run", *extra,
                      tmp_path=tmp_path, VLLM_API_KEY="sk-from-shell-1234")
    assert res.returncode == 0, res.stderr
    assert ("without a key" in res.stdout + res.stderr) == (extra[0] == "--allow-unauthenticated")
    assert "sk-from-shell-1234" not in res.stdout + res.stderr


def test_key_in_serve_args_is_refused(tmp_path):
    res = run_cluster(*HEAD, str(tmp_path), "--serve", "/m", "--serve-args", "--api-key k",
                      tmp_path=tmp_path)
    assert res.returncode == 2 and "--api-key-file" in res.stderr


def test_unknown_option_and_missing_key_file_are_one_line_errors(tmp_path):
    res = run_cluster(*HEAD, str(tmp_path), "--blkio-weight", "5", tmp_path=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--ipc" in res.stderr
    res = run_cluster(*HEAD, str(tmp_path), "--dry-run", "--api-key-file", "/nonexistent/k",
                      tmp_path=tmp_path)
    assert res.returncode == 2 and res.stderr.startswith("error: --api-key-file /nonexistent/k")


@pytest.mark.docker
def test_operator_options_reach_docker(docker_cluster, cluster_hf_home):
    """A worker started with the options of multi-node guides joins, and Docker holds each."""
    from cluster import backend

    ip = docker_cluster.head_ip.rsplit(".", 1)[0] + ".45"
    name = f"{docker_cluster.name}-opts"
    argv = [os.environ.get("ONENODE_TEST_IMAGE", "onenode:latest"), docker_cluster.head_ip,
            "--worker", str(cluster_hf_home), "--network", docker_cluster.network, "--ip", ip,
            "-e", f"VLLM_HOST_IP={ip}", "--name", name, "--cluster-name", docker_cluster.name,
            "--ray-token-file", docker_cluster.token_path, "--num-cpus", "1",
            "--object-store-memory", "128m", "--shm-size=1g", "--detach", "--ipc", "host",
            "--ulimit", "memlock=4194304", "--ulimit", "nofile=4096:8192", "--cap-add", "IPC_LOCK",
            "--security-opt", "seccomp=unconfined", "--label", "team=ml", "--add-host",
            "node9:10.9.9.9", "--hostname", "gpu-node", "--restart", "on-failure:2",
            "--memory", "3g", "--cpus", "1.5", "--cpuset-cpus", "0", "--user", "0",
            "--workdir", "/tmp", "--device", "/dev/null:/dev/onenull:rw"]
    c = backend.client()
    try:
        res = subprocess.run([sys.executable, "-m", "cluster.run_cluster", *argv], cwd=REPO,
                             capture_output=True, text=True, timeout=180, check=False,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert res.returncode == 0, res.stderr
        host = backend.get(c, name).attrs["HostConfig"]
        assert host["IpcMode"] == "host" and "seccomp=unconfined" in host["SecurityOpt"]
        assert {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]} == \
            {"memlock": (4194304, 4194304), "nofile": (4096, 8192)}
        assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        assert host["Memory"] == 3 << 30 and host["NanoCpus"] == 1_500_000_000
        assert host["CpusetCpus"] == "0" and host["ExtraHosts"] == ["node9:10.9.9.9"]
        assert "CAP_IPC_LOCK" in host["CapAdd"] or "IPC_LOCK" in host["CapAdd"]
        assert host["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/onenull",
                                    "CgroupPermissions": "rw"}]
        code, out = backend.exec_in(c, name, ["sh", "-c", "hostname; pwd; ulimit -l"])
        assert code == 0 and out.split() == ["gpu-node", "/tmp", "4096"], out
    finally:
        backend.remove(c, name, timeout=1)


@pytest.mark.docker
def test_an_option_the_daemon_refuses_is_one_line_and_leaves_nothing(docker_cluster,
                                                                      cluster_hf_home):
    """memlock beyond what the daemon may grant (unlimited, on a host that caps it)."""
    import resource

    from cluster import backend

    if resource.getrlimit(resource.RLIMIT_MEMLOCK)[1] == resource.RLIM_INFINITY:
        pytest.skip("this host allows unlimited memlock")
    name = f"{docker_cluster.name}-refused"
    ip = docker_cluster.head_ip.rsplit(".", 1)[0] + ".46"
    res = subprocess.run(
        [sys.executable, "-m", "cluster.run_cluster",
         os.environ.get("ONENODE_TEST_IMAGE", "onenode:latest"), docker_cluster.head_ip,
         "--worker", str(cluster_hf_home), "--network", docker_cluster.network, "--ip", ip,
         "--name", name, "--ray-token-file", docker_cluster.token_path, "--ulimit",
         "memlock=-1", "--detach"], cwd=REPO, capture_output=True, text=True, timeout=120,
        check=False, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(f"error: Docker refused to start {name}")
    assert backend.get(backend.client(), name) is None
