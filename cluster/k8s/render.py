"""The manifests of a layout as one YAML stream, with the Secrets to create first (pure)."""

import yaml

from cluster.k8s import kuberay, lws
from cluster.k8s.layout import K8sLayout


def manifests(layout: K8sLayout) -> list[dict]:
    return (lws if layout.kind == "lws" else kuberay).render(layout)


def secrets_note(layout: K8sLayout) -> str:
    """Secrets are created by the operator, never rendered: a literal would end up in git."""
    ns = f" -n {layout.namespace}" if layout.namespace else ""
    lines = ["# Create the Secrets first (their values never appear in these manifests):",
             f"#   kubectl{ns} create secret generic {layout.ray_token_secret} "
             f"--from-literal=token=\"$(openssl rand -hex 32)\"",
             f"#   kubectl{ns} create secret generic {layout.api_key_secret} "
             f"--from-literal=api-key=\"$(openssl rand -hex 32)\""]
    if layout.hf_token_secret:
        lines.append(f"#   kubectl{ns} create secret generic {layout.hf_token_secret} "
                     f"--from-literal=token=hf_...")
    lines.append(f"# The model cache is the PersistentVolumeClaim {layout.hf_cache_pvc!r}.")
    return "\n".join(lines) + "\n"


def to_yaml(layout: K8sLayout) -> str:
    docs = yaml.safe_dump_all(manifests(layout), sort_keys=False, default_flow_style=False)
    return secrets_note(layout) + "---\n" + docs
