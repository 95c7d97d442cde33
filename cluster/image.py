"""`onenode image build`: the onenode image, built with no registry.

1. base: Debian bookworm via debootstrap, `docker import`ed as onenode-base:bookworm (once);
2. wheelhouse: `pip download` on the host (containers cannot reach the index), cached under
   ~/.cache/onenode/wheels/<hash of images/requirements.txt>;
3. the project as a wheel, in the last layer;
4. tag onenode:<content hash> and onenode:latest; a no-op when that hash is already built.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cluster import backend
from cluster.progress import step
from engine.errors import ClusterError

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
BASE_TAG = "onenode-base:bookworm"
REPO_NAME = "onenode"
CACHE = Path(os.environ.get("ONENODE_CACHE", Path.home() / ".cache" / "onenode"))
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "any")


def content_hash(dockerfile: Path) -> str:
    h = hashlib.sha256()
    files = [dockerfile, IMAGES / "requirements.txt", REPO / "pyproject.toml"]
    for pkg in ("cluster", "engine", "healthcheck"):
        files += sorted(p for p in (REPO / pkg).rglob("*.py"))
    for f in files:
        h.update(str(f.relative_to(REPO)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def build_image(dockerfile: Path | None = None, tag_latest: bool = True) -> str:
    """Returns the content-hash tag. Shows progress; raises ClusterError with the fix."""
    dockerfile = dockerfile or IMAGES / "Dockerfile"
    tag = f"{REPO_NAME}:{content_hash(dockerfile)}"
    client = backend.client()
    if backend.image_exists(client, tag):
        step(f"image {tag} is already built (no-op)")
    else:
        if "onenode-base" in dockerfile.read_text():
            ensure_base(client)
        wheels = wheelhouse()
        with tempfile.TemporaryDirectory(prefix="onenode-build-") as ctx:
            _context(Path(ctx), dockerfile, wheels)
            backend.build_image(client, ctx, tag)
    if tag_latest:
        backend.tag_image(client, tag, f"{REPO_NAME}:latest")
    step(f"image ready: {tag} (also {REPO_NAME}:latest)")
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
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(["docker", "import", "-", BASE_TAG], stdin=tar.stdout,
                             capture_output=True, text=True)
        tar.wait()
        if imp.returncode != 0:
            raise ClusterError(f"docker import failed: {imp.stderr.strip()[:200]}")


def debian_mirror() -> str:
    if os.environ.get("ONENODE_DEBIAN_MIRROR"):
        return os.environ["ONENODE_DEBIAN_MIRROR"]
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def wheelhouse() -> Path:
    req = IMAGES / "requirements.txt"
    out = CACHE / "wheels" / hashlib.sha256(req.read_bytes()).hexdigest()[:12]
    if (out / ".complete").exists():
        step(f"wheelhouse cached at {out}")
        return out
    step(f"pip download -> {out} (first time: a few minutes)")
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", str(out), "--only-binary=:all:",
           "--python-version", "3.11", "-r", str(req)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    _run(cmd, "pip download failed; the host must reach the package index")
    (out / ".complete").write_text("ok")
    return out


def _context(ctx: Path, dockerfile: Path, wheels: Path) -> None:
    shutil.copy(dockerfile, ctx / "Dockerfile")
    (ctx / "wheels").mkdir()
    for whl in wheels.glob("*.whl"):
        try:
            os.link(whl, ctx / "wheels" / whl.name)  # no copy of ~400 MB
        except OSError:
            shutil.copy(whl, ctx / "wheels" / whl.name)
    shutil.copy(IMAGES / "requirements.txt", ctx / "wheels" / "requirements.txt")
    (ctx / "project").mkdir()
    step("building the onenode wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(ctx / "project"), str(REPO)], "building the project wheel failed")


def _run(cmd: list[str], fix: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise ClusterError(f"{fix} ({tail[0][:200]})")
