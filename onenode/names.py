"""Names of cluster objects. The head container, worker containers and the cluster network are
named from the cluster name in one place, so `cluster up`, `cluster serve`, `cluster healthcheck`
and the tests agree."""


def head_container(cluster: str) -> str:
    return f"{cluster}-head"


def worker_container(cluster: str, ip: str) -> str:
    return f"{cluster}-worker-{ip}"


def network(cluster: str) -> str:
    return f"{cluster}-net"
