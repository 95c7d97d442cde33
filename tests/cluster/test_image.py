"""The offline image build: pure pieces (variants, pins, cache keys, content hash) and, with Docker,
the no-op rebuild."""

import subprocess
import sys
from pathlib import Path

import pytest

from cluster import image
from onenode.errors import ConfigError

REQS = "# comment\ntorch==2.13.0\nray[default]\n"


def test_each_variant_pins_its_own_torch_build():
    assert image.torch_requirement(image.get_variant("cpu"), REQS) == "torch==2.13.0+cpu"
    # "===" excludes local labels: PyPI's (CUDA) wheel, never a +cpu one lying in find-links
    assert image.torch_requirement(image.get_variant("cuda"), REQS) == "torch===2.13.0"


def test_requirements_must_pin_torch_and_variants_are_named():
    with pytest.raises(ConfigError, match="torch==X.Y.Z"):
        image.torch_requirement(image.get_variant("cpu"), "torch>=2\n")
    with pytest.raises(ConfigError, match="cpu, cuda"):
        image.get_variant("rocm")


def test_the_shipped_requirements_pin_torch_2_13():
    text = (image.IMAGES / "requirements.txt").read_text()
    assert image.torch_requirement(image.get_variant("cpu"), text) == "torch==2.13.0+cpu"
    for variant in image.VARIANTS.values():
        assert (image.IMAGES / variant.dockerfile).exists()


def test_wheelhouse_key_is_the_requirements_hash_per_variant():
    cpu = image.wheelhouse_dir(image.get_variant("cpu"), b"torch==2.13.0\n")
    cuda = image.wheelhouse_dir(image.get_variant("cuda"), b"torch==2.13.0\n")
    other = image.wheelhouse_dir(image.get_variant("cpu"), b"torch==2.13.0\nray\n")
    assert cuda.name == f"{cpu.name}-cuda" and cpu.parent == image.CACHE / "wheels"
    assert other != cpu


def test_download_command_lists_every_manylinux_tag_and_the_pin():
    cmd = image.download_command(image.get_variant("cuda"), Path("/w"))
    platforms = {cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"}
    # the CUDA wheels use these; pip does not widen an explicit manylinux_2_X tag by itself
    assert {"manylinux_2_17_x86_64", "manylinux_2_27_x86_64", "manylinux_2_28_x86_64",
            "manylinux2014_x86_64", "any"} <= platforms
    assert "torch===2.13.0" in cmd and "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.11"  # bookworm's python


def test_content_hash_differs_per_variant_and_skips_caches():
    cpu, cuda = image.get_variant("cpu"), image.get_variant("cuda")
    assert image.content_hash(cpu) == image.content_hash(cpu) != image.content_hash(cuda)
    files = image.project_files()
    assert image.REPO / "cluster" / "image.py" in files
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
