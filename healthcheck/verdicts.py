"""Do the nodes agree? Consistency verdicts over the node inventories (pure).

Each verdict is one line that names the node(s) and the fix, so a user never has to diff two
`pip list`s by hand. Nodes are keyed by a label: their Ray IP, made unique when several Ray nodes
share one (a simulated cluster on one machine, or the #7815 symptom).
"""

from collections import defaultdict
from dataclasses import dataclass

from healthcheck.inventory import NVML_MISSING, NodeInventory

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
LEVELS = (OK, INFO, WARN, FAIL)
NODE_CHECKS = ("reachable", "versions", "env", "ip", "model", "shm", "gpu")
MIN_SHM_BYTES = 1 << 30
# Differ by design on every node (vLLM issue #7815: each node's own IP).
NODE_LOCAL_ENV = {"VLLM_HOST_IP"}


@dataclass(frozen=True, slots=True)
class Verdict:
    level: str  # ok | info | warn | fail
    check: str  # one of NODE_CHECKS, or allreduce | p2p | transport | nccl
    message: str
    nodes: tuple[str, ...] = ()


def worst(levels) -> str:
    return max(levels, key=LEVELS.index, default=OK)


def exit_code(verdicts: list[Verdict], strict: bool = False) -> int:
    """0 all good, 1 warnings (only with --strict), 2 failures."""
    level = worst(v.level for v in verdicts)
    if level == FAIL:
        return 2
    return 1 if level == WARN and strict else 0


def _groups(nodes: dict[str, NodeInventory], key) -> dict[str, list[str]]:
    out = defaultdict(list)
    for label, inv in nodes.items():
        out[key(inv)].append(label)
    return dict(out)


def _differ_text(groups: dict[str, list[str]]) -> str:
    return "; ".join(f"{value} on {', '.join(labels)}" for value, labels in groups.items())


def version_verdicts(nodes: dict[str, NodeInventory]) -> list[Verdict]:
    out = []
    for name in ("python", "torch", "ray", "onenode"):
        groups = _groups(nodes, lambda inv, n=name: inv.versions.get(n, "?"))
        if len(groups) > 1:
            out.append(Verdict(FAIL, "versions", f"{name} differs across nodes: "
                               f"{_differ_text(groups)}; start every node from the same image "
                               f"(`onenode image build`, then run_cluster with that tag)",
                               tuple(sorted(_minority(groups)))))
    images = _groups(nodes, lambda inv: inv.image_id or "unknown")
    if len(images) > 1:
        out.append(Verdict(FAIL, "versions", f"image differs across nodes: "
                           f"{_differ_text(images)}; restart the odd node(s) with the head's "
                           f"image tag", tuple(sorted(_minority(images)))))
    return out


def _minority(groups: dict[str, list[str]]) -> list[str]:
    """The nodes outside the largest group: the ones to fix."""
    biggest = max(groups.values(), key=len)
    return [label for labels in groups.values() if labels is not biggest for label in labels]


def env_verdicts(nodes: dict[str, NodeInventory]) -> list[Verdict]:
    """Every NCCL_/GLOO_/VLLM_ variable must hold the same value on every node (vLLM #6803:
    `export` in one shell reaches only that node)."""
    names = sorted({n for inv in nodes.values() for n in inv.env} - NODE_LOCAL_ENV)
    out = []
    for name in names:
        def value(inv, n=name):  # what the report shows: secrets stay masked
            return inv.env.get(n, "(unset)")

        def compared(inv, n=name):  # what is compared: a secret's per-run HMAC
            return inv.secret_fingerprints.get(n) or value(inv)

        groups = _groups(nodes, compared)
        if len(groups) < 2:
            continue
        shown, secrets = {}, 0
        for key, labels in groups.items():
            text = value(nodes[labels[0]])
            if key in nodes[labels[0]].secret_fingerprints.values():
                secrets += 1
                text = f"{text}(secret #{secrets})"  # distinct secrets stay distinguishable
            shown[f"{name}={text}"] = labels
        out.append(Verdict(WARN, "env", f"{name} differs across nodes: {_differ_text(shown)}; "
                           f"pass the same `-e {name}=...` to run_cluster on every node",
                           tuple(sorted(_minority(groups)))))
    return out


def ip_verdicts(nodes: dict[str, NodeInventory], simulated: bool = False) -> list[Verdict]:
    out = []
    for label, inv in nodes.items():
        if inv.vllm_host_ip and inv.vllm_host_ip != inv.ray_ip:
            out.append(Verdict(FAIL, "ip", f"{label} ({inv.hostname}): VLLM_HOST_IP="
                               f"{inv.vllm_host_ip} but Ray knows the node as {inv.ray_ip} "
                               f"(vLLM #7815); restart it with `-e VLLM_HOST_IP={inv.ray_ip}` (or, "
                               f"if {inv.vllm_host_ip} is right, start Ray with "
                               f"`--node-ip-address {inv.vllm_host_ip}`)", (label,)))
    for ip, labels in _groups(nodes, lambda inv: inv.ray_ip).items():
        if len(labels) < 2:
            continue
        hosts = {nodes[label].hostname for label in labels}
        if simulated or len(hosts) == 1:
            out.append(Verdict(INFO, "ip", f"{len(labels)} Ray nodes share {ip} on one host "
                               f"({', '.join(sorted(hosts))}): a simulated cluster", tuple(labels)))
            continue
        out.append(Verdict(FAIL, "ip", f"{len(labels)} nodes ({', '.join(sorted(hosts))}) "
                           f"report the same IP {ip} (vLLM #7815): start each node with its own "
                           f"routable address, `-e VLLM_HOST_IP=<that node's IP>` (run_cluster "
                           f"passes it to `ray start --node-ip-address`)", tuple(labels)))
    return out


def model_verdicts(nodes: dict[str, NodeInventory]) -> list[Verdict]:
    with_model = {label: inv for label, inv in nodes.items() if inv.model is not None}
    if not with_model:
        return []
    out = []
    path = next(iter(with_model.values())).model["path"]
    missing = sorted(label for label, inv in with_model.items() if not inv.model["present"])
    for label in missing:
        out.append(Verdict(FAIL, "model", f"model {path} is missing on {label} "
                           f"({nodes[label].hostname}); mount it at the same path on every "
                           f"node (run_cluster IMAGE HEAD_IP --worker HF_HOME mounts HF_HOME at "
                           f"/root/.cache/huggingface) or copy it there", (label,)))
    present = {label: inv for label, inv in with_model.items() if inv.model["present"]}
    groups = _groups(present, lambda inv: inv.model.get("fingerprint") or "unreadable")
    if len(groups) > 1:
        odd = sorted(_minority(groups))
        out.append(Verdict(FAIL, "model", f"model {path} differs across nodes (config, index or "
                           f"weight files): {_differ_text(groups)}; copy the head's files to "
                           f"{', '.join(odd)}", tuple(odd)))
    return out


def shm_verdicts(nodes: dict[str, NodeInventory]) -> list[Verdict]:
    out = []
    for label, inv in nodes.items():
        if inv.shm_bytes < MIN_SHM_BYTES:
            out.append(Verdict(WARN, "shm", f"{label}: /dev/shm is {inv.shm_bytes / 2**20:.0f} "
                               f"MiB (< 1 GiB); NCCL and Ray's object store need more: start the "
                               f"container with `--shm-size 16g` or `--ipc host`", (label,)))
    return out


def gpu_verdicts(nodes: dict[str, NodeInventory]) -> list[Verdict]:
    out = [Verdict(FAIL if err == NVML_MISSING else WARN, "gpu", f"{label}: {err}", (label,))
           for label, inv in nodes.items() for err in inv.errors]
    with_gpus = [label for label, inv in nodes.items() if inv.gpus]
    if not with_gpus:
        return out
    for label, inv in nodes.items():
        if not inv.gpus and not inv.errors:  # with errors, those say why it sees none
            out.append(Verdict(FAIL, "gpu", f"{label} ({inv.hostname}) has no GPU visible "
                               f"while {', '.join(with_gpus)} do; start its container with "
                               f"`--gpus all` (and the NVIDIA container toolkit installed)",
                               (label,)))
    names = _groups({k: v for k, v in nodes.items() if v.gpus},
                    lambda inv: f"{len(inv.gpus)}x {inv.gpus[0]['name']}")
    if len(names) > 1:
        out.append(Verdict(WARN, "gpu", f"nodes have different GPUs: {_differ_text(names)}; "
                           f"TP/PP ranks run at the pace of the slowest GPU",
                           tuple(sorted(_minority(names)))))
    return out


def ib_verdicts(nodes: dict[str, NodeInventory]) -> list[Verdict]:
    """RDMA hardware that NCCL cannot use: the kernel has ports, but verbs cannot open a device
    (no `--device /dev/infiniband`) or the image lacks libibverbs (use the cuda image)."""
    out = []
    for label, inv in nodes.items():
        if not inv.ib_ports:
            continue
        if not any(d.get("open") for d in inv.ib_devices):
            out.append(Verdict(WARN, "transport", f"{label} has InfiniBand/RoCE ports but verbs "
                               f"can open none of them; start its container with `--device "
                               f"/dev/infiniband --cap-add IPC_LOCK --ulimit memlock=-1`",
                               (label,)))
        elif not inv.libibverbs:
            out.append(Verdict(WARN, "transport", f"{label} has InfiniBand/RoCE devices but no "
                               f"libibverbs, so NCCL uses sockets; run the cuda image "
                               f"(`onenode image build --variant cuda`)", (label,)))
    return out


def node_verdicts(nodes: dict[str, NodeInventory], simulated: bool = False) -> list[Verdict]:
    return (version_verdicts(nodes) + env_verdicts(nodes) + ip_verdicts(nodes, simulated) +
            model_verdicts(nodes) + shm_verdicts(nodes) + gpu_verdicts(nodes) + ib_verdicts(nodes))


def node_matrix(labels: list[str], verdicts: list[Verdict]) -> dict[str, dict[str, str]]:
    """node -> check -> worst level, for the nodes x checks table."""
    matrix = {label: {check: OK for check in NODE_CHECKS} for label in labels}
    for v in verdicts:
        if v.check not in NODE_CHECKS:
            continue
        for label in v.nodes:
            if label in matrix:
                matrix[label][v.check] = worst([matrix[label][v.check], v.level])
    return matrix
