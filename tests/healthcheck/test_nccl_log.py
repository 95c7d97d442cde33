from pathlib import Path

import pytest

from healthcheck.nccl_log import link_transports, parse_nccl_log, transport_kind

FIXTURES = Path(__file__).parent / "fixtures" / "nccl"


def parse(name):
    return parse_nccl_log((FIXTURES / f"{name}.log").read_text().splitlines())


@pytest.mark.parametrize("via, kind", [
    ("P2P/IPC", "p2p"), ("P2P/CUMEM/read", "p2p"), ("SHM/direct/direct", "shm"),
    ("NET/Socket/0", "socket"), ("NET/IB/5/GDRDMA", "ib"), ("NET/IBext_v8/3", "ib"),
    ("CollNet/0", "collnet"), ("NVLS", "nvls"), ("something", "other"),
])
def test_transport_kind(via, kind):
    assert transport_kind(via) == kind


def test_p2p_inside_one_node():
    log = parse("p2p")
    links = link_transports(log)
    assert [(t.src, t.dst, t.transport, t.inter_node) for t in links] == [
        (0, 1, "p2p", False), (1, 0, "p2p", False)]
    assert links[0].channels == 2
    assert log.rank_hosts == {0: "gpu-a", 1: "gpu-a"} and log.networks == {"gpu-a": "Socket"}


def test_shm_with_ray_prefixes():
    links = link_transports(parse("shm"))
    assert {(t.src, t.dst, t.transport) for t in links} == {(0, 1, "shm"), (1, 0, "shm")}
    assert not any(t.inter_node for t in links)


def test_socket_between_nodes_and_warnings():
    log = parse("socket")
    links = {(t.src, t.dst): t for t in link_transports(log)}
    assert links[(1, 2)].transport == "socket" and links[(1, 2)].inter_node
    assert links[(3, 0)].transport == "socket" and links[(3, 0)].inter_node
    assert links[(0, 1)].transport == "p2p" and not links[(0, 1)].inter_node
    assert log.networks == {"node-1": "Socket", "node-2": "Socket"}
    assert log.warnings == ["node-2: NET/Socket : message truncated : receiving 1048576 bytes "
                            "instead of 4096"]


def test_ib_without_gdrdma_and_bus_id_ranks():
    log = parse("ib")
    links = link_transports(log)
    assert {(t.src, t.dst) for t in links} == {(0, 1), (1, 0)}
    assert all(t.transport == "ib" and t.inter_node and not t.gdrdma for t in links)
    assert log.networks == {"ib-host-a": "IB", "ib-host-b": "IBext_v8"}


def test_gdrdma_with_ansi_colours_and_an_explicit_rank_map():
    log = parse("gdrdma")
    assert len(log.connections) == 5
    rank_node = {r: ("10.0.8.2" if r < 8 else "10.0.8.3") for r in range(16)}
    links = {(t.src, t.dst): t for t in link_transports(log, rank_node)}
    assert links[(15, 7)].transport == "ib" and links[(15, 7)].gdrdma and links[(15, 7)].inter_node
    assert links[(11, 3)].gdrdma
    assert links[(3, 4)].transport == "p2p" and not links[(3, 4)].inter_node


def test_unrelated_lines_are_ignored():
    log = parse_nccl_log(["hello", "", "node:1:2 [0] NCCL INFO Connected all trees",
                          "INFO 05-01 vllm something via NET/Socket"])
    assert log.connections == [] and log.rank_hosts == {} and log.warnings == []
