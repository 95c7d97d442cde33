"""Kubernetes manifests for an onenode cluster (`onenode k8s render`): pure builders of plain
dicts from the same ContainerSpec that run_cluster starts with Docker."""
