"""What the ray executor forwards to every worker, and the node-IP agreement check (pure)."""

from onenode.secrets import is_secret

FORWARD_PREFIXES = ("VLLM_", "NCCL_", "GLOO_", "HF_", "ONENODE_")
# Node-specific: each node's own value must win (vLLM issue #7815).
NODE_LOCAL = {"VLLM_HOST_IP"}


def forwarded_env(environ: dict[str, str]) -> dict[str, str]:
    """The driver's settings that should hold on every node (vLLM issue #6803: a variable exported
    in one shell only affects that node). Secrets are not copied into Ray's runtime env: each
    container already has them from creation."""
    return {k: v for k, v in environ.items()
            if k.startswith(FORWARD_PREFIXES) and k not in NODE_LOCAL and not is_secret(k)}


def ip_mismatches(infos: list[dict]) -> list[str]:
    """One line per worker whose VLLM_HOST_IP disagrees with the IP Ray knows its node by."""
    bad = []
    for info in infos:
        env_ip, ray_ip = info.get("vllm_host_ip"), info.get("ray_ip")
        if env_ip and ray_ip and env_ip != ray_ip:
            bad.append(f"rank {info['rank']} on {info.get('hostname')}: VLLM_HOST_IP={env_ip} "
                       f"but Ray's node IP is {ray_ip}; start that node with "
                       f"`-e VLLM_HOST_IP={ray_ip}` (run_cluster passes it to "
                       f"`ray start --node-ip-address`)")
    return bad
