import pytest

from cluster.api_key import API_KEY_MOUNT, KEY_FILE_ENV
from cluster.args import parse_run_cluster
from cluster.docker_values import parse_env
from cluster.spec import TOKEN_MOUNT, build_spec
from onenode.errors import ConfigError
from onenode.secrets import mask_env, mask_text

BASE = ["onenode:latest", "10.0.0.1", "--head", "/data/hf"]


def spec_for(argv, env=None, token="/tok", gpus=None):
    args = parse_run_cluster(argv)
    resolved = parse_env(args.env, [], env or {})
    ip = resolved.get("VLLM_HOST_IP") or args.ip or (args.head_ip if args.role == "head" else None)
    return args, build_spec(args, resolved, ip, token, gpus)


def ray_argv(spec):
    return spec.command[spec.command.index("--") + 1:]


def test_vllm_argument_order_and_defaults():
    args, spec = spec_for(BASE)
    assert (args.image, args.head_ip, args.role, args.hf_home) == \
        ("onenode:latest", "10.0.0.1", "head", "/data/hf")
    assert spec.name == "onenode-head" and spec.network == "host"
    assert spec.shm_size == int(10.24 * 2**30)
    assert spec.mounts[0].source == "/data/hf"
    assert spec.mounts[0].target == "/root/.cache/huggingface"
    assert ray_argv(spec)[:5] == ("ray", "start", "--head", "--port", "6379")
    assert spec.command[-1] == "--block"
    assert spec.restart == ("unless-stopped", 0)


def test_every_docker_option_maps_into_the_spec():
    argv = ["img", "10.0.0.1", "--worker", "/hf", "-e", "VLLM_HOST_IP=10.0.0.2",
            "--env=NCCL_SOCKET_IFNAME=eth0", "-v", "/models:/models:ro", "--volume", "/a:/b",
            "--cap-add", "CAP_SYS_ADMIN", "--privileged", "--shm-size", "2g", "--gpus", "all",
            "--device", "/dev/infiniband", "--network", "net1", "--ip", "10.0.0.2",
            "--ulimit", "memlock=-1", "--name", "w1"]
    args, spec = spec_for(argv)
    env = spec.env_dict()
    assert env["VLLM_HOST_IP"] == "10.0.0.2" and env["NCCL_SOCKET_IFNAME"] == "eth0"
    assert [(m.source, m.target, m.read_only) for m in spec.mounts[1:3]] == \
        [("/models", "/models", True), ("/a", "/b", False)]
    assert spec.cap_add == ("CAP_SYS_ADMIN",) and spec.privileged
    assert spec.shm_size == 2 * 2**30 and spec.gpus == "all"
    assert spec.devices == ("/dev/infiniband:/dev/infiniband:rwm",)
    assert spec.network == "net1" and spec.ip == "10.0.0.2"
    assert spec.ulimits == (("memlock", -1, -1),) and spec.name == "w1"
    # the fix for vLLM #7815: Ray's node IP is VLLM_HOST_IP
    i = spec.command.index("--node-ip-address")
    assert spec.command[i + 1] == "10.0.0.2"
    assert ray_argv(spec)[2:4] == ("--address", "10.0.0.1:6379")


def test_unsupported_option_lists_the_supported_ones():
    with pytest.raises(ConfigError) as err:
        parse_run_cluster(BASE + ["--blkio-weight", "10"])
    assert "--blkio-weight" in str(err.value) and "--cap-add" in str(err.value)
    assert "-p/--publish" in str(err.value) and "--api-key-file" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_role_prints_usage():
    with pytest.raises(ConfigError, match="usage: run_cluster IMAGE HEAD_IP"):
        parse_run_cluster(["img", "10.0.0.1", "/hf"])


def test_worker_name_from_ip_and_token_as_file_mount():
    _, spec = spec_for(["img", "10.0.0.1", "--worker", "/hf", "-e", "VLLM_HOST_IP=10.0.0.7"])
    assert spec.name == "onenode-worker-10.0.0.7"
    env = spec.env_dict()
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == TOKEN_MOUNT
    assert any(m.target == TOKEN_MOUNT and m.read_only for m in spec.mounts)
    assert "/tok" not in env.values()  # the host token path is not in env
    assert not any("/tok" == a for a in spec.command)  # not in argv


def test_dashboard_binds_node_ip_with_auth_and_loopback_without():
    _, spec = spec_for(BASE)
    assert spec.command[spec.command.index("--dashboard-host") + 1] == "10.0.0.1"
    _, spec = spec_for(BASE + ["--no-ray-auth"], token=None)
    assert spec.command[spec.command.index("--dashboard-host") + 1] == "127.0.0.1"
    # explicit: Ray turns token auth on by itself when it finds a token
    assert spec.env_dict()["RAY_AUTH_MODE"] == "disabled"
    assert not any(m.target == TOKEN_MOUNT for m in spec.mounts)


def test_fingerprint_is_stable_and_sensitive():
    _, a = spec_for(BASE)
    _, b = spec_for(BASE)
    _, c = spec_for(BASE + ["-e", "X=1"])
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_env_pass_through_and_env_file_precedence():
    lines = [("f", 1, "A=0"), ("f", 2, "B=2"), ("f", 3, "# comment")]
    env = parse_env(["A=1", "HF_TOKEN"], lines, {"HF_TOKEN": "hf_x"})
    assert env == {"A": "1", "B": "2", "HF_TOKEN": "hf_x"}


def test_secret_masking():
    masked = mask_env({"HF_TOKEN": "hf_abc", "API_KEY": "k", "NCCL_DEBUG": "INFO"})
    assert masked == {"HF_TOKEN": "***", "API_KEY": "***", "NCCL_DEBUG": "INFO"}
    assert mask_text("token hf_secret123 leaked", ["hf_secret123"]) == "token *** leaked"


def test_serve_flag_is_head_only():
    args = parse_run_cluster(BASE + ["--serve", "/m", "--serve-args", "-pp 2 --port 1"])
    assert args.serve == "/m" and args.serve_args == "-pp 2 --port 1"
    with pytest.raises(ConfigError, match="--head"):
        parse_run_cluster(["img", "10.0.0.1", "--worker", "/hf", "--serve", "/m"])


@pytest.mark.parametrize("argv,match", [
    (["img", "10.0.0.300", "--worker", "/hf"], "HEAD_IP"),
    (["img", "head;rm -rf /", "--worker", "/hf"], "HEAD_IP"),
    (BASE + ["--ip", "10.0.0"], "--ip"),
    (BASE + ["--ready-timeout", "soon"], "--ready-timeout"),
    (BASE + ["--num-cpus", "-1"], "--num-cpus"),
])
def test_addresses_and_numbers_are_validated(argv, match):
    with pytest.raises(ConfigError, match=match):
        parse_run_cluster(argv)


def test_head_may_be_a_host_name_and_ipv6_is_an_ip():
    assert parse_run_cluster(["img", "head-1.example.com", "--worker", "/hf"]).head_ip == \
        "head-1.example.com"
    assert parse_run_cluster(BASE + ["--ip", "fd00::2"]).ip == "fd00::2"


def test_vllm_host_ip_must_be_an_ip():
    with pytest.raises(ConfigError, match="VLLM_HOST_IP"):
        spec_for(["img", "10.0.0.1", "--worker", "/hf", "-e", "VLLM_HOST_IP=eth0"])


def test_valued_options_accept_equals_form_and_need_a_value():
    args = parse_run_cluster(BASE + ["--shm-size=2g", "--name=n1", "--network=net"])
    assert (args.shm_size, args.name, args.network) == ("2g", "n1", "net")
    with pytest.raises(ConfigError, match="--cap-add needs a value"):
        parse_run_cluster(BASE + ["--cap-add"])


def test_gpus_default_comes_from_detection_and_flag_wins():
    _, spec = spec_for(BASE, gpus="all")
    assert spec.gpus == "all"
    _, spec = spec_for(BASE + ["--gpus", "device=0,1"], gpus="all")
    assert spec.gpus == "device=0,1"
    _, spec = spec_for(BASE, gpus=None)
    assert spec.gpus is None


def test_head_gets_fast_failure_detection_workers_do_not():
    _, head = spec_for(BASE)
    _, worker = spec_for(["img", "10.0.0.1", "--worker", "/hf"])
    assert head.env_dict()["RAY_health_check_period_ms"] == "1000"
    assert "RAY_health_check_period_ms" not in worker.env_dict()


def test_partition_grace_sets_how_long_ray_waits_before_a_node_is_dead():
    """A 5 s network blip must not rebuild: the default grace is 10 missed 1 s checks."""
    _, head = spec_for(BASE)
    env = head.env_dict()
    assert int(env["RAY_health_check_failure_threshold"]) * \
        int(env["RAY_health_check_period_ms"]) / 1000 == 10
    _, head = spec_for(BASE + ["--partition-grace", "30"])
    assert head.env_dict()["RAY_health_check_failure_threshold"] == "30"
    _, head = spec_for(BASE + ["-e", "RAY_health_check_failure_threshold=5"])
    assert head.env_dict()["RAY_health_check_failure_threshold"] == "5"  # -e still wins
    with pytest.raises(ConfigError, match="--partition-grace"):
        parse_run_cluster(BASE + ["--partition-grace", "soon"])


def test_operator_options_map_into_the_spec():
    argv = BASE + ["--ipc", "host", "--pid=host", "-p", "127.0.0.1:8000:8000", "--runtime",
                   "nvidia", "--security-opt", "seccomp=unconfined", "--label", "team=ml",
                   "--add-host", "node2:10.0.0.2", "--hostname", "h1", "--restart",
                   "on-failure:5", "--memory", "64g", "--cpus", "8.5", "--cpuset-cpus", "0-7",
                   "--user", "1000:1000", "--workdir", "/work", "--ulimit", "nofile=1024:2048",
                   "--ulimit", "memlock=-1", "--device", "/dev/x:/dev/y:rw"]
    _, spec = spec_for(argv)
    assert (spec.ipc_mode, spec.pid_mode, spec.runtime) == ("host", "host", "nvidia")
    assert spec.ports == (("8000/tcp", "127.0.0.1", 8000),)
    assert spec.security_opt == ("seccomp=unconfined",)
    assert ("team", "ml") in spec.labels and spec.extra_hosts == (("node2", "10.0.0.2"),)
    assert spec.hostname == "h1" and spec.restart == ("on-failure", 5)
    assert spec.mem_limit == 64 << 30 and spec.nano_cpus == 8_500_000_000
    assert (spec.cpuset_cpus, spec.user, spec.working_dir) == ("0-7", "1000:1000", "/work")
    assert spec.ulimits == (("nofile", 1024, 2048), ("memlock", -1, -1))
    assert spec.devices == ("/dev/x:/dev/y:rw",)


def test_restart_defaults_to_unless_stopped_and_last_ulimit_wins():
    _, spec = spec_for(BASE + ["--ulimit", "nofile=1", "--ulimit", "nofile=2:3"])
    assert spec.restart == ("unless-stopped", 0)
    assert spec.ulimits == (("nofile", 2, 3),)


def test_onenode_labels_cannot_be_overridden():
    with pytest.raises(ConfigError, match="onenode.cluster"):
        spec_for(BASE + ["--label", "onenode.cluster=other"])


def test_api_key_file_is_a_read_only_mount_named_by_env():
    args = parse_run_cluster(BASE + ["--api-key-file", "/etc/key"])
    spec = build_spec(args, {}, "10.0.0.1", "/tok", None, key_file="/etc/key")
    assert any(m.source == "/etc/key" and m.target == API_KEY_MOUNT and m.read_only
               for m in spec.mounts)
    assert spec.env_dict()[KEY_FILE_ENV] == API_KEY_MOUNT


@pytest.mark.parametrize("flag,value,match", [
    ("--shm-size", "lots", "--shm-size 'lots' is not a size"),
    ("--memory", "1x", "--memory"), ("--cpus", "0", "--cpus"), ("--ipc", "hots", "--ipc"),
    ("--restart", "sometimes", "--restart"), ("--device", "dev/x", "--device"),
    ("-p", "80-90:80", "-p"), ("--add-host", "nohost", "--add-host"),
    ("--ulimit", "memlock", "--ulimit"), ("-v", "/a", "-v"), ("--cpuset-cpus", "a", "cpuset"),
])
def test_bad_option_values_name_the_option(flag, value, match):
    with pytest.raises(ConfigError, match=match):
        spec_for(BASE + [flag, value])


def test_node_runs_under_the_supervisor_worker_waits_for_the_head():
    _, head = spec_for(BASE)
    assert head.command[:4] == ("python", "-m", "cluster.supervisor", "--serve")
    _, worker = spec_for(["img", "10.0.0.1", "--worker", "/hf", "-e", "VLLM_HOST_IP=10.0.0.7"])
    i = worker.command.index("--wait-for")
    assert worker.command[i + 1] == "10.0.0.1:6379"
    assert "--serve" not in worker.command


@pytest.mark.parametrize("policy", ["no", "always", "unless-stopped", "on-failure",
                                    "on-failure:5"])
def test_restart_policy_as_docker_takes_it(policy):
    from cluster.backend import run_kwargs

    _, spec = spec_for(BASE + ["--restart", policy])
    name, _, count = policy.partition(":")
    assert spec.restart == (name, int(count or 0))
    assert run_kwargs(spec)["restart_policy"] == {"Name": name,
                                                  "MaximumRetryCount": int(count or 0)}


def test_bad_restart_policy_names_the_choices():
    with pytest.raises(ConfigError, match="--restart"):
        spec_for(BASE + ["--restart", "sometimes"])
