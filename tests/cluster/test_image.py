"""The offline image build: pure pieces (variants, pins, cache keys, content hash) and, with Docker,
the no-op rebuild."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cluster import image, lock
from onenode.errors import ConfigError


def test_variants_are_named_and_their_files_exist():
    with pytest.raises(ConfigError, match="cpu, cuda"):
        image.get_variant("rocm")
    for variant in image.VARIANTS.values():
        assert (image.IMAGES / variant.dockerfile).exists() and image.lock_file(variant).exists()


def test_each_dockerfile_builds_from_its_variant_base():
    for variant in image.VARIANTS.values():
        text = (image.IMAGES / variant.dockerfile).read_text()
        assert "ARG BASE_IMAGE\nFROM $BASE_IMAGE\n" in text
        assert "RUN python -m engine.kernels" in text  # the CPU kernels are compiled at build
        assert "--require-hashes" in text and "/etc/onenode/image-id" in text
        assert "ENV ONENODE_IMAGE_ID=$ONENODE_IMAGE_ID" in text


def test_the_cuda_base_has_rdma_user_space_and_the_cpu_base_does_not():
    cpu, cuda = image.get_variant("cpu"), image.get_variant("cuda")
    rdma = {"libibverbs1", "ibverbs-providers", "librdmacm1", "ibverbs-utils"}
    assert rdma <= set(cuda.base_packages) and not rdma & set(cpu.base_packages)
    assert cpu.base_tag != cuda.base_tag  # two bases, so neither build overwrites the other
    # a base is reused while its tag exists: a changed package list must change the tag
    assert image.Variant("cpu", "Dockerfile", "onenode-base", ("python3",)).base_tag \
        != cpu.base_tag and cpu.base_tag.startswith("onenode-base:bookworm-")
    assert "g++" in cpu.base_packages  # the kernels' compiler
    cmd = image.debootstrap_command(cuda, "/root", "http://m/debian")
    include = cmd[[a.startswith("--include=") for a in cmd].index(True)]
    assert rdma <= set(include.removeprefix("--include=").split(","))
    assert "python3" in include and cmd[-3:] == ["bookworm", "/root", "http://m/debian"]


def test_the_cuda_base_has_python_headers_for_tritons_launcher():
    cpu, cuda = image.get_variant("cpu"), image.get_variant("cuda")
    assert "python3-dev" in cuda.base_packages and "python3-dev" not in cpu.base_packages
    cmd = image.debootstrap_command(cuda, "/root", "http://m/debian")
    include = cmd[[a.startswith("--include=") for a in cmd].index(True)]
    assert "python3-dev" in include.removeprefix("--include=").split(",")


def test_wheelhouse_key_is_the_lock_hash_per_variant():
    cpu = image.wheelhouse_dir(image.get_variant("cpu"), b"torch==2.13.0+cpu\n")
    cuda = image.wheelhouse_dir(image.get_variant("cuda"), b"torch==2.13.0+cpu\n")
    other = image.wheelhouse_dir(image.get_variant("cpu"), b"torch==2.13.0+cpu\nray==2\n")
    assert cpu.name.endswith("-cpu") and cuda.name.endswith("-cuda")
    assert cpu.parent == image.CACHE / "wheels" and other != cpu


def test_download_command_fetches_exactly_the_lock():
    cmd = image.download_command(image.get_variant("cuda"), Path("/w"))
    platforms = {cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"}
    # the CUDA wheels use these; pip does not widen an explicit manylinux_2_X tag by itself
    assert {"manylinux_2_17_x86_64", "manylinux_2_27_x86_64", "manylinux_2_28_x86_64",
            "manylinux2014_x86_64", "any"} <= platforms
    assert cmd[cmd.index("-r") + 1].endswith("images/lock-cuda.txt")
    assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(cmd)
    assert cmd[cmd.index("--python-version") + 1] == "3.11"  # bookworm's python


def test_labels_carry_the_id_and_the_locked_versions():
    labels = image.image_labels(image.get_variant("cpu"), "0123abcd4567",
                                "torch==2.13.0+cpu \\\nray==2.60.0 \\\n")
    assert labels["org.onenode.image-id"] == "0123abcd4567"
    assert labels["org.onenode.version.torch"] == "2.13.0+cpu"
    assert labels["org.onenode.version.ray"] == "2.60.0"
    assert labels["org.onenode.variant"] == "cpu"


def test_content_hash_differs_per_variant_and_skips_caches():
    cpu, cuda = image.get_variant("cpu"), image.get_variant("cuda")
    assert image.content_hash(cpu) == image.content_hash(cpu) != image.content_hash(cuda)
    files = image.project_files()
    assert image.REPO / "cluster" / "image.py" in files
    # the lock is hashed: a re-lock that moves a version is a new tag
    assert image.content_hash(cpu) != image.content_hash(image.Variant("cpu", "Dockerfile",
                                                                        cpu.base_name, ("x",)))
    assert not any("__pycache__" in f.parts or f.suffix == ".pyc" for f in files)
    assert not any(f.is_relative_to(image.REPO / "build") for f in files)


def test_debian_mirror_comes_from_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("ONENODE_DEBIAN_MIRROR", raising=False)
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n")
    assert image.debian_mirror(sources) == "http://mirror.example/debian"
    assert image.debian_mirror(tmp_path / "missing") == "http://deb.debian.org/debian"
    monkeypatch.setenv("ONENODE_DEBIAN_MIRROR", "http://m2/debian")
    assert image.debian_mirror(sources) == "http://m2/debian"


@pytest.mark.docker
def test_image_build_is_a_no_op_once_built(docker_required):
    def build():
        return subprocess.run([sys.executable, "-m", "onenode.cli", "image", "build",
                               "--no-latest"], capture_output=True, text=True, timeout=600)

    first = build()  # after `make image` this is already the no-op; else the project layer only
    assert first.returncode == 0, first.stderr
    again = build()
    assert again.returncode == 0 and "no-op" in again.stderr, again.stderr
    tag = again.stdout.strip()
    assert tag == f"onenode:{image.content_hash(image.get_variant('cpu'))}"
    out = subprocess.run(["docker", "run", "--rm", tag, "sh", "-c",
                          "command -v onenode run_cluster && python -c "
                          "'import torch, ray; print(torch.__version__, ray.__version__)'"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "/opt/venv/bin/onenode" in out.stdout and "2.13.0+cpu" in out.stdout
    baked = subprocess.run(["docker", "run", "--rm", tag, "sh", "-c", "cat /etc/onenode/image-id; "
                            "echo $ONENODE_IMAGE_ID; grep -c == /etc/onenode/versions.txt"],
                           capture_output=True, text=True, timeout=120)
    image_id = tag.split(":")[1]
    assert baked.stdout.split()[:2] == [image_id, image_id] and int(baked.stdout.split()[2]) > 20
    labels = json.loads(subprocess.run(["docker", "inspect", "-f", "{{json .Config.Labels}}", tag],
                                       capture_output=True, text=True, timeout=60).stdout)
    assert labels["org.onenode.image-id"] == image_id
    assert labels["org.onenode.version.ray"] == lock.locked_versions(
        image.lock_file(image.get_variant("cpu")).read_text())["ray"]
