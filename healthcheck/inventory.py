"""What one node has: identity, addresses, versions, GPUs, /dev/shm, env, InfiniBand, the model.

Runs on the node itself (inside a probe); reads only local state, no Ray, so it also runs on a
machine without Ray. Secret values (names containing TOKEN/KEY/SECRET/PASSWORD) never leave the
node: they are replaced by an HMAC under a key that lives for one healthcheck run, which is enough
to compare them across nodes and useless to anyone reading the report.
"""

import fcntl
import hashlib
import hmac
import os
import platform
import socket
import struct
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from healthcheck.verbs import has_libibverbs, verbs_devices
from onenode.secrets import is_secret

ENV_PREFIXES = ("NCCL_", "GLOO_", "VLLM_")
MASK = "****"
IMAGE_ID_ENV = ("ONENODE_IMAGE_ID", "ONENODE_IMAGE")
IMAGE_ID_FILE = Path("/etc/onenode/image-id")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
HEAD_BYTES = 8 << 20  # a single-file model (GGUF) is fingerprinted by its size and first 8 MiB


@dataclass(frozen=True, slots=True)
class NodeInventory:
    hostname: str
    ray_ip: str
    node_id: str
    vllm_host_ip: str | None
    interfaces: dict[str, str]  # name -> IPv4 address
    versions: dict[str, str]  # python, torch, ray, onenode
    image_id: str | None
    gpus: list[dict]  # name, memory_bytes, nvlinks
    driver: dict[str, str]  # driver and CUDA versions (empty without NVML)
    shm_bytes: int
    env: dict[str, str]  # NCCL_*/GLOO_*/VLLM_*, secrets masked
    secret_fingerprints: dict[str, str]  # secret name -> HMAC (per run)
    ib_ports: list[dict]  # device, port, rate_gbit, state
    model: dict | None  # path, present, fingerprint
    errors: list[str] = field(default_factory=list)
    ib_devices: list[dict] = field(default_factory=list)  # what verbs can open (healthcheck.verbs)
    libibverbs: bool = False  # the image has the library NCCL loads for InfiniBand/RoCE


def collect(ray_ip: str = "", node_id: str = "", model_path: str | None = None,
            run_key: bytes = b"") -> NodeInventory:
    errors: list[str] = []
    gpus, driver = nvml_gpus(errors)
    env, fingerprints = node_env(dict(os.environ), run_key)
    return NodeInventory(
        hostname=socket.gethostname(), ray_ip=ray_ip, node_id=node_id,
        vllm_host_ip=os.environ.get("VLLM_HOST_IP"), interfaces=interfaces(),
        versions=versions(), image_id=image_id(), gpus=gpus, driver=driver,
        shm_bytes=shm_bytes(), env=env, secret_fingerprints=fingerprints, ib_ports=ib_ports(),
        model=model_fingerprint(model_path) if model_path else None, errors=errors,
        ib_devices=verbs_devices(), libibverbs=has_libibverbs())


def node_env(environ: dict[str, str], run_key: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """The variables that must agree across nodes, with secrets masked."""
    env, prints = {}, {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIXES):
            continue
        if is_secret(name):
            env[name] = MASK
            prints[name] = hmac.new(run_key, value.encode(), hashlib.sha256).hexdigest()[:16]
        else:
            env[name] = value
    return env, prints


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "ray", "onenode"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    if out["onenode"] != "not installed":
        out["onenode"] += f"+{_onenode_build()}"
    return out


def _onenode_build() -> str:
    """Two builds of one version differ in their files: the installed RECORD (a sha256 per file)
    tells them apart, so nodes started from images built at different commits disagree here."""
    record = metadata.distribution("onenode").read_text("RECORD") or ""
    return hashlib.sha256(record.encode()).hexdigest()[:8]


def image_id() -> str | None:
    for name in IMAGE_ID_ENV:
        if os.environ.get(name):
            return os.environ[name]
    try:
        return IMAGE_ID_FILE.read_text().strip() or None
    except OSError:
        return None


def interfaces() -> dict[str, str]:
    """IPv4 address of every interface that has one (SIOCGIFADDR; no extra dependency)."""
    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue  # no IPv4 address
            out[name] = socket.inet_ntoa(packed[20:24])
    return out


def shm_bytes(path: str = "/dev/shm") -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_blocks * st.f_frsize


NVML_MISSING = ("nvidia-ml-py is not installed, so its GPUs cannot be counted; "
                "pip install nvidia-ml-py (an onenode dependency)")


def nvml_gpus(errors: list[str]) -> tuple[list[dict], dict[str, str]]:
    """GPUs as NVML sees them. No NVML library (no driver: a CPU node) means no GPUs; a missing
    nvidia-ml-py or an NVML that fails to start is an error, since the node may have GPUs."""
    try:
        import pynvml
    except ImportError:
        errors.append(NVML_MISSING)
        return [], {}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return [], {}
    except Exception as exc:  # noqa: BLE001 - NVMLError: report, don't crash the probe
        errors.append(f"NVML cannot start ({exc}); check the GPU driver and the container's "
                      f"--gpus flag")
        return [], {}
    try:
        driver = {"driver": _text(pynvml.nvmlSystemGetDriverVersion())}
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        driver["cuda"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            gpus.append({"index": i, "name": _text(pynvml.nvmlDeviceGetName(h)),
                         "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                         "nvlinks": _active_nvlinks(pynvml, h)})
        return gpus, driver
    except Exception as exc:  # noqa: BLE001 - report, don't crash the probe
        errors.append(f"NVML: {exc}")
        return [], {}
    finally:
        pynvml.nvmlShutdown()


def _active_nvlinks(pynvml, handle) -> int:
    active = 0
    for link in range(18):  # NVML_NVLINK_MAX_LINKS
        try:
            active += int(pynvml.nvmlDeviceGetNvLinkState(handle, link) == 1)
        except Exception:  # noqa: BLE001 - link absent / not supported
            break
    return active


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ib_ports(root: str = "/sys/class/infiniband") -> list[dict]:
    """Active InfiniBand/RoCE ports and their rate (Gb/s)."""
    out = []
    for port in sorted(Path(root).glob("*/ports/*")):
        try:
            rate = float((port / "rate").read_text().split()[0])
            state = (port / "state").read_text().split(":")[-1].strip()
        except (OSError, ValueError, IndexError):
            continue
        out.append({"device": port.parent.parent.name, "port": port.name,
                    "rate_gbit": rate, "state": state})
    return out


def model_fingerprint(path: str) -> dict:
    """Presence and a checksum of what identifies a model: for a directory its config.json,
    weight index and weight file names and sizes; for one file (GGUF) its size and first 8 MiB.
    Cheap on 100 GB checkpoints: no weight is read in full."""
    p = Path(path)
    info = {"path": path, "present": p.exists(), "fingerprint": None}
    if not p.exists():
        return info
    digest = hashlib.sha256()
    try:
        if p.is_dir():
            for name in ("config.json", "model.safetensors.index.json",
                         "pytorch_model.bin.index.json"):
                if (p / name).is_file():
                    digest.update(name.encode() + (p / name).read_bytes())
            for f in sorted(p.iterdir()):
                if f.suffix in WEIGHT_SUFFIXES:
                    digest.update(f"{f.name}:{f.stat().st_size}".encode())
        else:
            digest.update(str(p.stat().st_size).encode())
            with p.open("rb") as fh:
                digest.update(fh.read(HEAD_BYTES))
    except OSError as exc:
        info["error"] = str(exc)
        return info
    info["fingerprint"] = digest.hexdigest()[:16]
    return info
