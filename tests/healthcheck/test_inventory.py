import json
import os
import socket
import sys

from healthcheck import inventory
from healthcheck.inventory import MASK, collect, model_fingerprint, node_env


def test_collect_on_this_machine(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    inv = collect("192.0.2.7", "node-1", str(tmp_path), b"k")
    assert inv.hostname == socket.gethostname() and inv.ray_ip == "192.0.2.7"
    assert inv.versions["python"].startswith("3.") and inv.versions["torch"]
    assert inv.interfaces.get("lo") == "127.0.0.1"
    assert inv.shm_bytes > 0
    assert inv.model["present"] and inv.model["fingerprint"]
    assert inv.gpus == [] or all("memory_bytes" in g for g in inv.gpus)


def test_env_keeps_only_the_cluster_variables_and_masks_secrets():
    environ = {"NCCL_SOCKET_IFNAME": "eth0", "GLOO_SOCKET_IFNAME": "eth0",
               "VLLM_HOST_IP": "1.2.3.4",
               "VLLM_API_KEY": "sk-secret", "NCCL_IB_PASSWORD": "pw", "HOME": "/root",
               "HF_TOKEN": "hf_x"}
    env, prints = node_env(environ, b"run-key")
    assert env == {"GLOO_SOCKET_IFNAME": "eth0", "NCCL_IB_PASSWORD": MASK,
                   "NCCL_SOCKET_IFNAME": "eth0", "VLLM_API_KEY": MASK, "VLLM_HOST_IP": "1.2.3.4"}
    assert set(prints) == {"VLLM_API_KEY", "NCCL_IB_PASSWORD"}
    assert "sk-secret" not in json.dumps([env, prints])
    # Same value, same run key -> same fingerprint; another run's key gives another one.
    assert node_env(environ, b"run-key")[1] == prints
    assert node_env(environ, b"other")[1]["VLLM_API_KEY"] != prints["VLLM_API_KEY"]


def test_model_fingerprint_of_a_directory(tmp_path):
    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    first = model_fingerprint(str(tmp_path))
    assert first["present"] and len(first["fingerprint"]) == 16
    (tmp_path / "model.safetensors").write_bytes(b"x" * 11)  # a different weight file size
    assert model_fingerprint(str(tmp_path))["fingerprint"] != first["fingerprint"]
    (tmp_path / "tokenizer.json").write_text("{}")  # not part of the identity
    second = model_fingerprint(str(tmp_path))["fingerprint"]
    (tmp_path / "config.json").write_text('{"a": 2}')
    assert model_fingerprint(str(tmp_path))["fingerprint"] != second


def test_model_fingerprint_of_one_file_and_a_missing_path(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    assert model_fingerprint(str(gguf))["fingerprint"]
    missing = model_fingerprint(str(tmp_path / "nope"))
    assert missing == {"path": str(tmp_path / "nope"), "present": False, "fingerprint": None}


def test_image_id_from_env(monkeypatch):
    monkeypatch.setenv("ONENODE_IMAGE_ID", "onenode:1234")
    assert inventory.image_id() == "onenode:1234"


def test_ib_ports_read_sysfs_layout(tmp_path):
    port = tmp_path / "mlx5_0" / "ports" / "1"
    port.mkdir(parents=True)
    (port / "rate").write_text("200 Gb/sec (4X HDR)\n")
    (port / "state").write_text("4: ACTIVE\n")
    assert inventory.ib_ports(str(tmp_path)) == [
        {"device": "mlx5_0", "port": "1", "rate_gbit": 200.0, "state": "ACTIVE"}]
    assert inventory.ib_ports(str(tmp_path / "absent")) == []


def test_shm_of_a_missing_mount_is_zero():
    assert inventory.shm_bytes("/no/such/dir") == 0
    assert inventory.shm_bytes(os.getcwd()) > 0


def test_missing_nvidia_ml_py_is_an_error_not_no_gpus(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    errors: list[str] = []
    assert inventory.nvml_gpus(errors) == ([], {})
    assert errors == [inventory.NVML_MISSING]


def test_no_nvml_library_is_a_cpu_node(monkeypatch):
    import pynvml

    def no_library():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)
    errors: list[str] = []
    assert inventory.nvml_gpus(errors) == ([], {}) and errors == []

    def no_driver():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    assert inventory.nvml_gpus(errors) == ([], {})
    assert len(errors) == 1 and errors[0].startswith("NVML cannot start")
