"""`onenode k8s render` from the command line: YAML on stdout, a misfit is one line and exit 2."""

import subprocess
import sys

import yaml


def onenode(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onenode.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_render_prints_applicable_yaml():
    out = onenode("k8s", "render", "/root/.cache/huggingface/models/m", "--nodes", "2",
                  "--gpus-per-node", "8", "--tensor-parallel-size", "8",
                  "--pipeline-parallel-size", "2", "--kind", "kuberay", "--image", "r/onenode:1")
    assert out.returncode == 0, out.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(out.stdout) if d]
    assert kinds == ["RayCluster", "Deployment", "Service"]


def test_a_layout_that_does_not_fit_is_one_line():
    out = onenode("k8s", "render", "m", "--nodes", "2", "--gpus-per-node", "8",
                  "--tensor-parallel-size", "3", "--pipeline-parallel-size", "2")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "every GPU runs one rank" in out.stderr
