"""`onenode image build`: the onenode image, built with no registry.

1. base: Debian bookworm via debootstrap, `docker import`ed as onenode-base:bookworm (once);
2. wheelhouse: `pip download` on the host (containers cannot reach the index), cached under
   ~/.cache/onenode/wheels/<hash of images/requirements.txt>[-<variant>];
3. the project as a wheel, built from a clean copy of its sources, in the last layer;
4. tag onenode:<content hash> and onenode:latest; a no-op when that hash is already built.

Two variants share all of this and differ only in which torch 2.13.0 wheel the wheelhouse holds:
`cpu` (the `+cpu` build) and `cuda` (PyPI's Linux wheel, which brings the CUDA runtime as
nvidia-* wheels, so no registry CUDA base image is needed; the host's driver comes in through the
NVIDIA container toolkit at `--gpus`).
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cluster import backend
from cluster.progress import step
from onenode.errors import ClusterError, ConfigError
from onenode.paths import onenode_cache

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
BASE_TAG = "onenode-base:bookworm"
REPO_NAME = "onenode"
CACHE = onenode_cache()
PACKAGES = ("onenode", "bench", "cluster", "engine", "healthcheck")
# pip never widens an explicit manylinux_2_X tag to older glibc versions, so list every one the
# base (bookworm, glibc 2.36) can run; the CUDA wheels alone use 2_12, 2_17, 2_18, 2_24, 2_27, 2_28.
PLATFORMS = ("manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64",
             *(f"manylinux_2_{v}_x86_64" for v in range(5, 37)), "any")


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    dockerfile: str
    # Added to the requirements when downloading: picks *which* torch 2.13.0 wheel. "===" is exact
    # (no local label), so a `+cpu` wheel lying in a find-links directory cannot shadow PyPI's.
    torch_pin: str


VARIANTS = {"cpu": Variant("cpu", "Dockerfile", "torch=={version}+cpu"),
            "cuda": Variant("cuda", "Dockerfile.cuda", "torch==={version}")}


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ConfigError(f"unknown image variant {name!r}; use one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def torch_requirement(variant: Variant, requirements: str) -> str:
    """The variant's exact torch pin, from the `torch==X` line of images/requirements.txt."""
    match = re.search(r"^torch==([0-9][^\s+;#]*)", requirements, re.MULTILINE)
    if not match:
        raise ConfigError("images/requirements.txt must pin torch as `torch==X.Y.Z`")
    return variant.torch_pin.format(version=match.group(1))


def project_files() -> list[Path]:
    """What goes into the project wheel (and so into the content hash): no build/ leftovers."""
    files = [REPO / "pyproject.toml", REPO / "README.md"]
    for pkg in PACKAGES:
        files += sorted(p for p in (REPO / pkg).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return files


def content_hash(variant: Variant) -> str:
    h = hashlib.sha256(variant.name.encode())
    for f in [IMAGES / variant.dockerfile, IMAGES / "requirements.txt", *project_files()]:
        h.update(str(f.relative_to(REPO)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def build_image(variant_name: str = "cpu", tag_latest: bool = True) -> str:
    """Returns the content-hash tag. Shows progress; raises ClusterError with the fix."""
    variant = get_variant(variant_name)
    tag = f"{REPO_NAME}:{content_hash(variant)}"
    client = backend.client()
    if backend.image_exists(client, tag):
        step(f"image {tag} is already built (no-op)")
    else:
        ensure_base(client)
        wheels = wheelhouse(variant)
        with tempfile.TemporaryDirectory(prefix="onenode-build-") as ctx:
            _context(Path(ctx), variant, wheels)
            backend.build_image(client, ctx, tag)
    if tag_latest:
        backend.tag_image(client, tag, f"{REPO_NAME}:latest")
    step(f"image ready: {tag} ({variant.name}" + (f", also {REPO_NAME}:latest)" if tag_latest
                                                 else ")"))
    return tag


def ensure_base(client) -> None:
    if backend.image_exists(client, BASE_TAG):
        return
    if not shutil.which("debootstrap"):
        raise ClusterError("debootstrap is missing; run scripts/ensure_docker.sh (installs it) "
                           "or `apt-get install -y debootstrap`")
    with tempfile.TemporaryDirectory(prefix="onenode-rootfs-") as root:
        step(f"debootstrap bookworm from {debian_mirror()} (about a minute)")
        cmd = ["debootstrap", "--variant=minbase",
               "--include=python3,python3-venv,ca-certificates,iproute2,procps",
               "bookworm", root, debian_mirror()]
        _run(cmd, "debootstrap failed; check that the Debian mirror is reachable")
        step(f"docker import -> {BASE_TAG}")
        tarball = Path(root + ".tar")
        try:
            _run(["tar", "-C", root, "-cf", str(tarball), "."], "packing the base rootfs failed")
            backend.import_rootfs(client, tarball, BASE_TAG)
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


def wheelhouse_dir(variant: Variant, requirements: bytes) -> Path:
    key = hashlib.sha256(requirements).hexdigest()[:12]
    return CACHE / "wheels" / (key if variant.name == "cpu" else f"{key}-{variant.name}")


def download_command(variant: Variant, out: Path) -> list[str]:
    req = IMAGES / "requirements.txt"
    cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", str(out), "--only-binary=:all:",
           "--python-version", "3.11", "-r", str(req), torch_requirement(variant, req.read_text())]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    return cmd


def wheelhouse(variant: Variant) -> Path:
    out = wheelhouse_dir(variant, (IMAGES / "requirements.txt").read_bytes())
    if (out / ".complete").exists():
        step(f"wheelhouse cached at {out}")
        return out
    step(f"pip download ({variant.name}) -> {out} (first time: a few minutes)")
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
    shutil.copy(IMAGES / "requirements.txt", ctx / "wheels" / "requirements.txt")
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
