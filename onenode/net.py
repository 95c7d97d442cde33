"""This node's IP as the rest of the cluster should see it (VLLM_HOST_IP wins, as in vLLM)."""

import os
import socket


def node_ip() -> str:
    env = os.environ.get("VLLM_HOST_IP")
    if env:
        return env
    # In a container on a bridge network the hostname resolves to the container's address;
    # on host networking set VLLM_HOST_IP (vLLM issue #7815).
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def free_port(host: str = "") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
