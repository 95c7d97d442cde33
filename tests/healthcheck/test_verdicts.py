from healthcheck.verdicts import (
    FAIL,
    INFO,
    OK,
    WARN,
    Verdict,
    env_verdicts,
    exit_code,
    gpu_verdicts,
    ip_verdicts,
    model_verdicts,
    node_matrix,
    node_verdicts,
    shm_verdicts,
    version_verdicts,
)

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
VERSIONS = {"python": "3.11.2", "torch": "2.13.0+cpu", "ray": "2.60.0", "onenode": "0.1.0"}


def cluster(*invs):
    return {i.ray_ip: i for i in invs}
H100 = {"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 80 << 30, "nvlinks": 18}


def three(inv, **c_kw):
    return cluster(inv(A), inv(B), inv(C, **c_kw))


def test_agreeing_nodes_have_no_findings(inv):
    assert node_verdicts(three(inv)) == []
    assert exit_code([]) == 0


def test_versions_and_image_name_the_odd_node(inv):
    found = version_verdicts(three(inv, versions={**VERSIONS, "torch": "2.4.0"}, image_id="old"))
    assert [v.level for v in found] == [FAIL, FAIL]
    assert "torch differs across nodes: 2.13.0+cpu on 10.0.0.1, 10.0.0.2; 2.4.0 on 10.0.0.3" \
        in found[0].message
    assert all(v.nodes == (C,) for v in found)


def test_env_differs_names_the_variable_and_the_nodes(inv):
    nodes = cluster(inv(A, env={"VLLM_HOST_IP": A, "NCCL_SOCKET_IFNAME": "eth0"}),
                    inv(B, env={"VLLM_HOST_IP": B, "NCCL_SOCKET_IFNAME": "eth0"}),
                    inv(C, env={"VLLM_HOST_IP": C, "NCCL_SOCKET_IFNAME": "eth9"}))
    [v] = env_verdicts(nodes)  # VLLM_HOST_IP differs by design and is not reported
    assert v.level == WARN and v.nodes == (C,)
    assert v.message.startswith("NCCL_SOCKET_IFNAME differs across nodes: "
                                "NCCL_SOCKET_IFNAME=eth0 on 10.0.0.1, 10.0.0.2; "
                                "NCCL_SOCKET_IFNAME=eth9 on 10.0.0.3")
    assert "-e NCCL_SOCKET_IFNAME=" in v.message


def test_env_set_on_one_node_only(inv):
    [v] = env_verdicts(three(inv, env={"VLLM_HOST_IP": C, "NCCL_DEBUG": "INFO"}))
    assert "NCCL_DEBUG=(unset) on 10.0.0.1, 10.0.0.2" in v.message and v.nodes == (C,)


def test_secrets_are_compared_by_fingerprint_and_never_shown(inv):
    def node(ip, fp):
        return inv(ip, env={"VLLM_API_KEY": "****"}, secret_fingerprints={"VLLM_API_KEY": fp})

    assert env_verdicts(cluster(node(A, "f1"), node(B, "f1"))) == []
    [v] = env_verdicts(cluster(node(A, "f1"), node(B, "f1"), node(C, "f2")))
    assert "VLLM_API_KEY=****(secret #1) on 10.0.0.1, 10.0.0.2" in v.message
    assert "VLLM_API_KEY=****(secret #2) on 10.0.0.3" in v.message
    assert "f1" not in v.message and v.nodes == (C,)


def test_vllm_host_ip_disagreeing_with_ray_ip_is_a_failure_with_the_fix(inv):
    [v] = ip_verdicts(three(inv, vllm_host_ip="10.9.9.9"))
    assert v.level == FAIL and v.nodes == (C,)
    assert "VLLM_HOST_IP=10.9.9.9 but Ray knows the node as 10.0.0.3" in v.message
    assert "-e VLLM_HOST_IP=10.0.0.3" in v.message


def test_two_hosts_sharing_an_ip_is_7815(inv):
    nodes = {"x#1": inv(A, hostname="h1"), "x#2": inv(A, hostname="h2")}
    [v] = ip_verdicts(nodes)
    assert v.level == FAIL and "report the same IP 10.0.0.1" in v.message


def test_shared_ip_on_one_host_is_a_simulated_cluster(inv):
    nodes = {"x#1": inv(A, hostname="vm"), "x#2": inv(A, hostname="vm")}
    assert [v.level for v in ip_verdicts(nodes)] == [INFO]
    nodes = {"x#1": inv(A, hostname="h1"), "x#2": inv(A, hostname="h2")}
    assert [v.level for v in ip_verdicts(nodes, simulated=True)] == [INFO]


def test_model_missing_is_named_with_the_ip(inv):
    good = {"path": "/models/m", "present": True, "fingerprint": "abc"}
    nodes = cluster(inv(A, model=good), inv(B, model=good),
                    inv(C, model={"path": "/models/m", "present": False, "fingerprint": None}))
    [v] = model_verdicts(nodes)
    assert v.level == FAIL and v.nodes == (C,)
    assert "model /models/m is missing on 10.0.0.3" in v.message


def test_model_differs(inv):
    def m(fp):
        return {"path": "/m", "present": True, "fingerprint": fp}

    [v] = model_verdicts(cluster(inv(A, model=m("a")), inv(B, model=m("a")), inv(C, model=m("b"))))
    assert v.level == FAIL and v.nodes == (C,) and "differs across nodes" in v.message
    assert model_verdicts(three(inv)) == []  # no --model: nothing checked


def test_small_shm_warns(inv):
    [v] = shm_verdicts(three(inv, shm_bytes=64 << 20))
    assert v.level == WARN and "/dev/shm is 64 MiB" in v.message and "--shm-size" in v.message


def test_node_without_gpu_in_a_gpu_cluster(inv):
    nodes = cluster(inv(A, gpus=[H100] * 8), inv(B, gpus=[H100] * 8), inv(C))
    [v] = gpu_verdicts(nodes)
    assert v.level == FAIL and v.nodes == (C,) and "--gpus all" in v.message
    assert gpu_verdicts(three(inv)) == []  # a CPU cluster is fine


def test_missing_nvml_is_a_verdict_not_no_gpus(inv):
    from healthcheck.inventory import NVML_MISSING

    # In a GPU cluster the node's own cause replaces the "--gpus all" guess.
    nodes = cluster(inv(A, gpus=[H100] * 8), inv(B, gpus=[H100] * 8),
                    inv(C, errors=[NVML_MISSING]))
    [v] = gpu_verdicts(nodes)
    assert v.level == FAIL and v.nodes == (C,) and "pip install nvidia-ml-py" in v.message
    # In a cluster where no node can count its GPUs, it is still said.
    [v] = gpu_verdicts(three(inv, errors=[NVML_MISSING]))[:1]
    assert v.level == FAIL and "nvidia-ml-py is not installed" in v.message


def test_mixed_gpus_warn(inv):
    a100 = {**H100, "name": "NVIDIA A100-SXM4-80GB"}
    [v] = gpu_verdicts(cluster(inv(A, gpus=[H100] * 8), inv(B, gpus=[a100] * 8)))
    assert v.level == WARN and "8x NVIDIA A100" in v.message


def test_exit_codes():
    warn, fail = Verdict(WARN, "shm", "w"), Verdict(FAIL, "ip", "f")
    assert exit_code([Verdict(INFO, "ip", "i")]) == 0
    assert exit_code([warn]) == 0 and exit_code([warn], strict=True) == 1
    assert exit_code([warn, fail]) == 2 and exit_code([fail], strict=True) == 2


def test_node_matrix_keeps_the_worst_level_per_check():
    matrix = node_matrix([A, B], [Verdict(WARN, "env", "w", (A,)), Verdict(FAIL, "env", "f", (A,)),
                                  Verdict(FAIL, "allreduce", "x", (B,))])
    assert matrix[A]["env"] == FAIL and matrix[B]["env"] == OK and "allreduce" not in matrix[B]


IB_PORT = [{"device": "mlx5_0", "port": "1", "rate_gbit": 200.0, "state": "ACTIVE"}]
IB_DEV = [{"device": "mlx5_0", "uverbs": "uverbs0", "open": True, "link_layer": "InfiniBand"}]


def test_ib_ports_that_verbs_cannot_open_name_the_docker_flags(inv):
    from healthcheck.verdicts import ib_verdicts

    nodes = {"a": inv("10.0.0.1", ib_ports=IB_PORT, ib_devices=IB_DEV, libibverbs=True),
             "b": inv("10.0.0.2", ib_ports=IB_PORT, ib_devices=[], libibverbs=True),
             "c": inv("10.0.0.3", ib_ports=IB_PORT, ib_devices=IB_DEV, libibverbs=False),
             "d": inv("10.0.0.4")}  # no RDMA hardware at all: nothing to say
    found = {v.nodes: v.message for v in ib_verdicts(nodes)}
    assert set(found) == {("b",), ("c",)}
    assert "--device /dev/infiniband" in found[("b",)]
    assert "--variant cuda" in found[("c",)]

