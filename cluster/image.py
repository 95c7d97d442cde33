"""`onenode image build`: the onenode image, built with no registry.

1. base: Debian bookworm via debootstrap, `docker import`ed (once per variant: the cuda base adds
   the RDMA user space that NCCL loads for InfiniBand/RoCE);
2. wheelhouse: `pip download` of the variant's lock (images/lock-<variant>.txt: exact versions,
   hash-checked) on the host (containers cannot reach the index), cached under
   ~/.cache/onenode/wheels/<hash of the lock>-<variant>;
3. the project as a wheel, built from a clean copy of its sources, in the last layer;
4. the image id (the content hash) baked in as /etc/onenode/image-id, $ONENODE_IMAGE_ID and labels,
   with the resolved versions (labels + /etc/onenode/versions.txt);
5. tag onenode:<content hash> and onenode:latest; a no-op when that hash is already built.

Two variants share all of this and differ in their base and in which torch 2.13.0 wheel the lock
holds: `cpu` (the `+cpu` build) and `cuda` (PyPI's Linux wheel, which brings the CUDA runtime as
nvidia-* wheels, so no registry CUDA base image is needed; the host's driver comes in through the
NVIDIA container toolkit at `--gpus`).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cluster import backend
from cluster.lock import check_lock, locked_versions
from cluster.progress import step
from onenode.errors import ClusterError, ConfigError
from onenode.paths import onenode_cache

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
REPO_NAME = "onenode"
CACHE = onenode_cache()
PACKAGES = ("onenode", "bench", "cluster", "engine", "healthcheck")
# pip never widens an explicit manylinux_2_X tag to older glibc versions, so list every one the
# base (bookworm, glibc 2.36) can run; the CUDA wheels alone use 2_12, 2_17, 2_18, 2_24, 2_27, 2_28.
PLATFORMS = ("manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64",
             *(f"manylinux_2_{v}_x86_64" for v in range(5, 37)), "any")
# g++: the engine compiles its C++ CPU kernels at image build (engine/kernels), and Triton
# compiles its launchers at run time on GPUs.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "iproute2", "procps", "g++")
# rdma-core's user space: NCCL dlopens libibverbs at run time; without it inter-node NCCL falls
# back to sockets whatever NCCL_IB_HCA says. ibverbs-utils gives `ibv_devinfo` for operators.
RDMA_PACKAGES = ("libibverbs1", "ibverbs-providers", "librdmacm1", "ibverbs-utils")
# Triton compiles a small C launcher that includes Python.h on its first kernel launch: without the
# headers every GPU decode would fail in the image (the engine would fall back to SDPA).
TRITON_PACKAGES = ("python3-dev",)
LABEL_PREFIX = "org.onenode"
VERSION_LABELS = ("torch", "ray", "transformers", "huggingface-hub", "numpy")


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    dockerfile: str
    base_name: str  # the debootstrapped base image's repository
    base_packages: tuple[str, ...]  # debootstrap --include

    @property
    def base_tag(self) -> str:
        """The Dockerfile's FROM (build arg BASE_IMAGE). The tag hashes the package list: a base
        is built once and reused while it exists, so a new package must mean a new tag."""
        digest = hashlib.sha256(" ".join(self.base_packages).encode()).hexdigest()[:8]
        return f"{self.base_name}:bookworm-{digest}"


VARIANTS = {"cpu": Variant("cpu", "Dockerfile", "onenode-base", BASE_PACKAGES),
            "cuda": Variant("cuda", "Dockerfile.cuda", "onenode-base-rdma",
                            BASE_PACKAGES + RDMA_PACKAGES + TRITON_PACKAGES)}


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ConfigError(f"unknown image variant {name!r}; use one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def lock_file(variant: Variant) -> Path:
    return IMAGES / f"lock-{variant.name}.txt"


def project_files() -> list[Path]:
    """What goes into the project wheel (and so into the content hash): no build/ leftovers."""
    files = [REPO / "pyproject.toml", REPO / "README.md"]
    for pkg in PACKAGES:
        files += sorted(p for p in (REPO / pkg).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return files


def content_hash(variant: Variant) -> str:
    """The image id: the variant, its base packages, Dockerfile, lock and the project's files."""
    h = hashlib.sha256(variant.name.encode() + b"\0" + " ".join(variant.base_packages).encode())
    for f in [IMAGES / variant.dockerfile, lock_file(variant), *project_files()]:
        h.update(str(f.relative_to(REPO)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def image_labels(variant: Variant, image_id: str, lock_text: str) -> dict[str, str]:
    """What `docker inspect` shows about the build: its id, variant and the key versions."""
    versions = locked_versions(lock_text)
    labels = {f"{LABEL_PREFIX}.image-id": image_id, f"{LABEL_PREFIX}.variant": variant.name,
              f"{LABEL_PREFIX}.python": "3.11"}
    for name in VERSION_LABELS:
        if name in versions:
            labels[f"{LABEL_PREFIX}.version.{name}"] = versions[name]
    return labels


def build_image(variant_name: str = "cpu", tag_latest: bool = True) -> str:
    """Returns the content-hash tag. Shows progress; raises ClusterError with the fix."""
    variant = get_variant(variant_name)
    lock = check_lock(variant.name)
    image_id = content_hash(variant)
    tag = f"{REPO_NAME}:{image_id}"
    client = backend.client()
    if backend.image_exists(client, tag):
        step(f"image {tag} is already built (no-op)")
    else:
        ensure_base(client, variant)
        wheels = wheelhouse(variant)
        with tempfile.TemporaryDirectory(prefix="onenode-build-") as ctx:
            _context(Path(ctx), variant, wheels)
            backend.build_image(client, ctx, tag, buildargs={"ONENODE_IMAGE_ID": image_id,
                                                          "BASE_IMAGE": variant.base_tag},
                                labels=image_labels(variant, image_id, lock.read_text()))
    if tag_latest:
        backend.tag_image(client, tag, f"{REPO_NAME}:latest")
    step(f"image ready: {tag} ({variant.name}" + (f", also {REPO_NAME}:latest)" if tag_latest
                                                 else ")"))
    return tag


def debootstrap_command(variant: Variant, root: str, mirror: str) -> list[str]:
    return ["debootstrap", "--variant=minbase", "--include=" + ",".join(variant.base_packages),
            "bookworm", root, mirror]


def ensure_base(client, variant: Variant) -> None:
    if backend.image_exists(client, variant.base_tag):
        return
    if not shutil.which("debootstrap"):
        raise ClusterError("debootstrap is missing; run scripts/ensure_docker.sh (installs it) "
                           "or `apt-get install -y debootstrap`")
    with tempfile.TemporaryDirectory(prefix="onenode-rootfs-") as root:
        step(f"debootstrap bookworm from {debian_mirror()} (about a minute)")
        _run(debootstrap_command(variant, root, debian_mirror()),
             "debootstrap failed; check that the Debian mirror is reachable")
        step(f"docker import -> {variant.base_tag}")
        tarball = Path(root + ".tar")
        try:
            _run(["tar", "-C", root, "-cf", str(tarball), "."], "packing the base rootfs failed")
            backend.import_rootfs(client, tarball, variant.base_tag)
        finally:
            tarball.unlink(missing_ok=True)


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    if os.environ.get("ONENODE_DEBIAN_MIRROR"):
        return os.environ["ONENODE_DEBIAN_MIRROR"]
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def wheelhouse_dir(variant: Variant, lock: bytes) -> Path:
    return CACHE / "wheels" / f"{hashlib.sha256(lock).hexdigest()[:12]}-{variant.name}"


def download_command(variant: Variant, out: Path) -> list[str]:
    """Exactly the lock's files: --require-hashes refuses any other build of a pinned version."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", str(out), "--only-binary=:all:",
           "--no-deps", "--require-hashes", "--python-version", "3.11",
           "-r", str(lock_file(variant))]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    return cmd


def wheelhouse(variant: Variant) -> Path:
    out = wheelhouse_dir(variant, lock_file(variant).read_bytes())
    if (out / ".complete").exists():
        step(f"wheelhouse cached at {out}")
        return out
    step(f"pip download ({variant.name} lock) -> {out} (first time: a few minutes)")
    out.mkdir(parents=True, exist_ok=True)
    _run(download_command(variant, out), "pip download failed; the host must reach the package "
         "index (the cpu variant also needs the torch +cpu wheel: PIP_EXTRA_INDEX_URL="
         "https://download.pytorch.org/whl/cpu)")
    (out / ".complete").write_text("ok")
    return out


def _context(ctx: Path, variant: Variant, wheels: Path) -> None:
    shutil.copy(IMAGES / variant.dockerfile, ctx / "Dockerfile")
    (ctx / "wheels").mkdir()
    for whl in wheels.glob("*.whl"):
        try:
            os.link(whl, ctx / "wheels" / whl.name)  # no copy of ~400 MB
        except OSError:
            shutil.copy(whl, ctx / "wheels" / whl.name)
    shutil.copy(lock_file(variant), ctx / "wheels" / "lock.txt")
    (ctx / "project").mkdir()
    step("building the onenode wheel")
    # From a clean copy: setuptools reuses ./build, whose stale modules would ship otherwise.
    src = ctx / "src"
    for f in project_files():
        (src / f.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, src / f.relative_to(REPO))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(ctx / "project"), str(src)], "building the project wheel failed")
    shutil.rmtree(src)


def _run(cmd: list[str], fix: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise ClusterError(f"{fix} ({tail[0][:200]})")
