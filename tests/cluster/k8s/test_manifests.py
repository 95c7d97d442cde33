"""cluster.k8s.lws / kuberay / render: the manifests carry what a run_cluster node carries.

Core kinds (Service, Deployment, and every pod template as a Pod) are checked against
Kubernetes' own schemas with kubernetes-validate; the CRD kinds' fields against the v1 CRDs of
LeaderWorkerSet and KubeRay (fixtures/crd_fields.json)."""

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from cluster.k8s import kuberay, lws, render
from cluster.k8s.layout import K8sLayout
from cluster.spec import HEAD_HEALTH_ENV, TOKEN_MOUNT

K8S_VERSION = "1.33"
CRDS = json.loads((Path(__file__).parent / "fixtures" / "crd_fields.json").read_text())
SECRET_VALUE = "s3cr3t-never-rendered"


def layout(kind: str, **kw) -> K8sLayout:
    base = dict(model="/root/.cache/huggingface/models/m", nodes=3, gpus_per_node=4, tp=4, pp=3,
                kind=kind, image="registry.example/onenode:0123abcd", name="llm",
                namespace="serving", ib=True, env=(("NCCL_IB_HCA", "mlx5"),))
    return K8sLayout(**{**base, **kw})


def pod_templates(doc: dict):
    """(where, pod template) for every pod template in a manifest."""
    spec = doc["spec"]
    if doc["kind"] == "LeaderWorkerSet":
        t = spec["leaderWorkerTemplate"]
        return [("leader", t["leaderTemplate"]), ("worker", t["workerTemplate"])]
    if doc["kind"] == "RayCluster":
        return [("head", spec["headGroupSpec"]["template"])] + [
            (g["groupName"], g["template"]) for g in spec["workerGroupSpecs"]]
    if doc["kind"] == "Deployment":
        return [("serve", spec["template"])]
    return []


def as_pod(template: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", **template["metadata"]},
            "spec": template["spec"]}


def crd_check(value, schema: dict, path: str) -> None:
    """Every field we set exists in the CRD, with the right type and an allowed enum value."""
    if schema.get("podTemplate"):
        return
    if "enum" in schema:
        assert value in schema["enum"], f"{path}={value!r} not in {schema['enum']}"
    kind = schema.get("type")
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in value.items():
            assert key in schema["properties"], f"{path}.{key} is not a field of the CRD"
            crd_check(sub, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, list):
        assert kind == "array", f"{path} is not an array in the CRD"
        for i, item in enumerate(value):
            crd_check(item, schema["items"], f"{path}[{i}]")
    elif kind in ("integer", "boolean", "string"):
        py = {"integer": int, "boolean": bool, "string": str}[kind]
        assert isinstance(value, py), f"{path}={value!r} should be {kind}"


@pytest.mark.parametrize("kind", ["lws", "kuberay"])
def test_core_kinds_and_pod_templates_pass_kubernetes_schemas(kind):
    docs = render.manifests(layout(kind))
    for doc in docs:
        key = f"{doc['apiVersion']}/{doc['kind']}"
        if key in CRDS:
            crd_check({"spec": doc["spec"]}, CRDS[key], doc["kind"])
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        for where, template in pod_templates(doc):
            try:
                kubernetes_validate.validate(as_pod(template), K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']} {where} pod template: {exc.message}")
    assert {d["kind"] for d in docs} >= {"Service"}


@pytest.mark.parametrize("kind", ["lws", "kuberay"])
def test_pods_get_gpus_shm_ib_model_volume_and_secrets_by_reference(kind):
    text = render.to_yaml(layout(kind))
    docs = [d for d in yaml.safe_load_all(text) if d]
    templates = [t for d in docs for _, t in pod_templates(d)]
    gpu_pods = [t for t in templates if t["metadata"]["labels"]["role"] != "serve"]
    assert gpu_pods
    for t in gpu_pods:
        c = t["spec"]["containers"][0]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 4
        assert "IPC_LOCK" in c["securityContext"]["capabilities"]["add"]
    for t in templates:
        vols = {v["name"]: v for v in t["spec"]["volumes"]}
        assert vols["dshm"]["emptyDir"]["medium"] == "Memory"
        assert vols["hf-cache"]["persistentVolumeClaim"]["claimName"] == "huggingface-cache"
        assert vols["ray-token"]["secret"]["secretName"] == "llm-ray-token"
        c = t["spec"]["containers"][0]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert {"/dev/shm", "/root/.cache/huggingface", "/dev/infiniband"} <= set(mounts)
        assert mounts[TOKEN_MOUNT]["readOnly"] is True
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token" and env["NCCL_IB_HCA"]["value"] == "mlx5"
        assert env["VLLM_HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert c["image"] == "registry.example/onenode:0123abcd"
    assert "&id" not in text and "*id" not in text  # no YAML aliases: plain for every tool
    assert "kubectl -n serving create secret generic llm-api-key" in text


@pytest.mark.parametrize("kind", ["lws", "kuberay"])
def test_the_api_pod_has_probes_the_key_secret_and_a_service(kind):
    docs = render.manifests(layout(kind))
    serving = [c for d in docs for _, t in pod_templates(d) for c in t["spec"]["containers"]
               if "ports" in c]
    assert len(serving) == 1
    c = serving[0]
    for probe in ("readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": 8000}
    # Liveness asks only "has the engine given up?": never during its own recovery.
    assert c["livenessProbe"]["httpGet"] == {"path": "/live", "port": 8000}
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 1800
    key = {e["name"]: e for e in c["env"]}["ONENODE_API_KEY"]
    assert key["valueFrom"]["secretKeyRef"] == {"name": "llm-api-key", "key": "api-key"}
    assert c["command"][:2] == ["bash", "-c"]
    assert "onenode serve /root/.cache/huggingface/models/m" in c["command"][2]
    assert "--tensor-parallel-size 4 --pipeline-parallel-size 3" in c["command"][2]
    [svc] = [d for d in docs if d["kind"] == "Service"]
    assert svc["spec"]["ports"][0]["targetPort"] == "http" and svc["spec"]["type"] == "ClusterIP"
    assert svc["metadata"]["namespace"] == "serving"


def test_lws_is_one_group_of_n_pods_whose_leader_runs_the_head():
    [lws_doc, _] = lws.render(layout("lws"))
    t = lws_doc["spec"]["leaderWorkerTemplate"]
    assert t["size"] == 3 and lws_doc["spec"]["replicas"] == 1
    leader = t["leaderTemplate"]["spec"]["containers"][0]
    worker = t["workerTemplate"]["spec"]["containers"][0]
    assert "ray start --head --port 6379" in leader["command"][2]
    assert "--block" not in leader["command"][2]  # serve runs after the head is up
    assert worker["command"][:2] == ["bash", "-c"]
    loop = worker["command"][2]  # a worker up before its leader retries instead of failing
    assert loop.startswith("for i in $(seq 60); do ray start --address "
                           "'$(LWS_LEADER_ADDRESS):6379' --node-ip-address")
    assert "--block && exit 0" in loop and loop.endswith("done; exit 1")
    leader_env = {e["name"]: e.get("value") for e in leader["env"]}
    assert HEAD_HEALTH_ENV.items() <= leader_env.items()  # as run_cluster's head gets them


def test_kuberay_cluster_has_n_gpu_pods_and_a_resourceless_serve_node():
    cluster, deployment, _ = kuberay.render(layout("kuberay"))
    assert cluster["spec"]["workerGroupSpecs"][0]["replicas"] == 2  # + the head = 3 pods
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-gpus"] == "4"
    assert cluster["spec"]["rayVersion"].startswith("2.")
    # A Deployment restarts the server for ever (a Job gave up after backoffLimit), one at a time.
    assert deployment["kind"] == "Deployment" and deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["template"]["spec"].get("restartPolicy", "Always") == "Always"
    serve = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--address llm-head-svc:6379" in serve["command"][2]
    assert "--num-cpus 0" in serve["command"][2] and "--num-gpus 0" in serve["command"][2]
    assert "resources" not in serve  # the ranks are actors on the GPU pods


@pytest.mark.parametrize("kind", ["lws", "kuberay"])
def test_no_secret_value_is_ever_rendered(kind, monkeypatch):
    monkeypatch.setenv("ONENODE_API_KEY", SECRET_VALUE)
    monkeypatch.setenv("HF_TOKEN", SECRET_VALUE)
    text = render.to_yaml(layout(kind, hf_token_secret="hf"))
    assert SECRET_VALUE not in text
    assert "name: hf\n" in text and "key: token" in text
