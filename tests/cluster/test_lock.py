"""cluster.lock: the uv command per variant, the rendered lock, and the staleness check; plus the
committed locks themselves (pinned, hashed, in step with images/requirements.txt)."""

from pathlib import Path

import pytest

from cluster import lock
from onenode.errors import ConfigError

REQS = b"# c\ntorch==2.13.0\nray[default]>=2.52,<2.61\n"


def test_each_variant_locks_its_own_torch_build():
    assert lock.torch_override("cpu", REQS.decode()) == "torch==2.13.0+cpu"
    # "===" excludes local labels: PyPI's (CUDA) wheel, never a +cpu one lying in find-links
    assert lock.torch_override("cuda", REQS.decode()) == "torch===2.13.0"
    with pytest.raises(ConfigError, match="torch==X.Y.Z"):
        lock.torch_override("cpu", "torch>=2\n")
    with pytest.raises(ConfigError, match="cpu, cuda"):
        lock.torch_override("rocm", REQS.decode())


def test_compile_command_targets_the_image_python_and_hashes():
    cmd = lock.compile_command("cpu", Path("/t/torch.txt"), ["/wheels"])
    assert cmd[1:5] == ["-m", "uv", "pip", "compile"]
    assert cmd[cmd.index("--python-version") + 1] == "3.11"
    assert "manylinux" in cmd[cmd.index("--python-platform") + 1]
    assert "--generate-hashes" in cmd and cmd[cmd.index("--find-links") + 1] == "/wheels"
    # a +cpu wheel in find-links would satisfy the cuda variant's torch==X too
    assert "--find-links" not in lock.compile_command("cuda", Path("/t/torch.txt"), ["/wheels"])


def test_rendered_lock_records_its_inputs_and_names_no_temp_path():
    body = ("torch==2.13.0 \\\n    --hash=sha256:aa\n    # via\n    #   --override /tmp/x/torch.txt\n")
    text = lock.render_lock("cuda", body, "/tmp/x/torch.txt", REQS)
    assert "/tmp/x" not in text and "variant cuda: torch===2.13.0" in text
    assert "torch===2.13.0 \\" in text  # exact match survives into `pip download`
    assert lock.INPUTS_MARK + lock.inputs_digest(REQS) in text
    assert "make lock" in text.splitlines()[1]


def test_a_lock_older_than_the_requirements_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "IMAGES", tmp_path)
    monkeypatch.setattr(lock, "REPO", tmp_path)
    monkeypatch.setattr(lock, "REQUIREMENTS", tmp_path / "requirements.txt")
    lock.REQUIREMENTS.write_bytes(REQS)
    with pytest.raises(ConfigError, match="lock-cpu.txt is missing; run `make lock`"):
        lock.check_lock("cpu")
    lock.lock_path("cpu").write_text(lock.render_lock("cpu", "torch==2.13.0+cpu\n", "x", REQS))
    assert lock.check_lock("cpu") == tmp_path / "lock-cpu.txt"
    lock.REQUIREMENTS.write_bytes(REQS + b"xgrammar\n")
    with pytest.raises(ConfigError, match="older than images/requirements.txt; run `make lock`"):
        lock.check_lock("cpu")


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_committed_locks_are_current_exact_and_hashed(variant):
    text = lock.check_lock(variant).read_text()  # raises if requirements.txt moved on
    versions = lock.locked_versions(text)
    assert versions["torch"] == ("2.13.0+cpu" if variant == "cpu" else "2.13.0")
    assert versions["ray"].startswith("2.") and "transformers" in versions
    pins = [line for line in text.splitlines() if line and line[0].isalnum()]
    assert pins and all("==" in line and line.endswith("\\") for line in pins)  # all hashed
    assert "/tmp" not in text and "find-links" not in text


def test_locked_versions_reads_pins_and_extras():
    text = "ray[default]==2.60.0 \\\ntorch===2.13.0 \\\nHuggingFace_Hub==1.0 \\\n# x==1\n"
    assert lock.locked_versions(text) == {"ray": "2.60.0", "torch": "2.13.0",
                                          "huggingface-hub": "1.0"}
