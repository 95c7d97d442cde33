import pytest

from engine.parallel.placement import NodeDevices, place_ranks_on_nodes, replica_first_node
from onenode.errors import ResourceError

N = NodeDevices


def test_pp_stages_spread_over_nodes_driver_first():
    nodes = [N("10.0.0.3", 2, 2), N("10.0.0.2", 2, 2), N("10.0.0.1", 2, 2)]
    assert place_ranks_on_nodes(1, 3, nodes, "10.0.0.2") == ["10.0.0.2", "10.0.0.1", "10.0.0.3"]


def test_tp_group_stays_on_one_node():
    nodes = [N("a", 8, 8), N("b", 8, 8)]
    assert place_ranks_on_nodes(8, 2, nodes, "a") == ["a"] * 8 + ["b"] * 8


def test_packs_stages_when_fewer_nodes_than_stages():
    nodes = [N("a", 4, 4), N("b", 2, 2)]
    assert place_ranks_on_nodes(2, 3, nodes, "a") == ["a", "a", "a", "a", "b", "b"]


def test_splits_tp_group_only_when_no_node_holds_it():
    nodes = [N("a", 2, 2), N("b", 2, 2)]
    assert place_ranks_on_nodes(4, 1, nodes, "a") == ["a", "a", "b", "b"]


def test_insufficient_lists_each_node_and_what_is_missing():
    nodes = [N("10.0.0.1", 1, 1), N("10.0.0.2", 1, 1)]
    with pytest.raises(ResourceError) as err:
        place_ranks_on_nodes(2, 2, nodes, "10.0.0.1", "GPU")
    msg = str(err.value)
    assert "needs 4 GPUs" in msg and "10.0.0.2: 1/1 GPU free" in msg and "missing 2" in msg
    assert "No available node types" not in msg and "\n" not in msg


def test_replicas_start_on_different_nodes_driver_first():
    nodes = [NodeDevices("10.0.0.3", 2, 2), NodeDevices("10.0.0.2", 2, 2),
             NodeDevices("10.0.0.9", 0, 0), NodeDevices("10.0.0.1", 2, 2)]
    firsts = [replica_first_node(nodes, "10.0.0.2", r) for r in range(4)]
    assert firsts == ["10.0.0.2", "10.0.0.1", "10.0.0.3", "10.0.0.2"]  # no-device node skipped
    # A replica of one rank goes to its own node even though the driver's node has room.
    assert place_ranks_on_nodes(1, 1, nodes, firsts[2]) == ["10.0.0.3"]
    # Its node full (another replica holds it): the first other node with room.
    full = [NodeDevices("10.0.0.3", 0, 2), *nodes[1:]]
    assert place_ranks_on_nodes(1, 1, full, firsts[2]) == ["10.0.0.1"]
