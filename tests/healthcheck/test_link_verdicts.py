from healthcheck.collectives import AllReduceResult, P2PResult
from healthcheck.link_verdicts import (
    allreduce_verdicts,
    merge_allreduce,
    p2p_verdicts,
    pair_results,
    transport_verdicts,
)
from healthcheck.nccl_log import LinkTransport
from healthcheck.thresholds import EXPECTED_GBPS
from healthcheck.verdicts import FAIL, INFO, WARN

MiB = 1 << 20


def row(size, t, correct=True):
    return {"size": size, "correct": correct, "time_s": t, "algbw_gbps": 0, "busbw_gbps": 0,
            "iters": 2}


def test_merge_takes_the_slowest_rank_and_all_must_be_correct():
    merged = merge_allreduce([[row(MiB, 0.001), row(16 * MiB, 0.01)],
                              [row(MiB, 0.002), row(16 * MiB, 0.01, correct=False)]], world=4)
    assert merged[0].time_s == 0.002 and merged[0].correct and not merged[1].correct
    assert merged[0].algbw_gbps == MiB / 0.002 / 1e9
    assert merged[0].busbw_gbps == merged[0].algbw_gbps * 2 * 3 / 4  # 2(n-1)/n


def result(size, busbw, correct=True):
    return AllReduceResult(size, correct, 0.1, busbw, busbw, 2)


def test_wrong_sums_fail():
    [v] = allreduce_verdicts("gloo", [result(MiB, 1.0, correct=False)], "gloo", EXPECTED_GBPS)
    assert v.level == FAIL and "wrong sums for 1 MiB" in v.message


def test_only_the_largest_judged_size_counts():
    ok = allreduce_verdicts("nccl", [result(MiB, 0.001), result(128 * MiB, 1.0)], "socket",
                            EXPECTED_GBPS)
    assert ok == []  # 1 MiB is latency-bound: not judged
    [v] = allreduce_verdicts("nccl", [result(128 * MiB, 10.0)], "ib-ndr", EXPECTED_GBPS)
    assert v.level == WARN and "under 80% of the 40 GB/s expected for ib-ndr" in v.message


def test_the_slow_pair_stands_out():
    measured = [P2PResult(0, 1, 16 * MiB, 0.01, 3.0), P2PResult(0, 2, 16 * MiB, 0.01, 2.8),
                P2PResult(1, 2, 16 * MiB, 0.1, 0.9)]
    labels = {0: "a", 1: "b", 2: "c"}
    links = pair_results(measured, labels, lambda a, b: "gloo", EXPECTED_GBPS)
    assert [link.level for link in links] == ["ok", "ok", WARN]
    [v] = p2p_verdicts(links, 16 * MiB)
    assert v.nodes == ("b", "c") and "slow link b <-> c: 0.90 GB/s" in v.message


def test_pair_under_its_figure_is_flagged():
    links = pair_results([P2PResult(0, 1, 64 * MiB, 0.1, 5.0)], {0: "a", 1: "b"},
                         lambda a, b: "ib-hdr", EXPECTED_GBPS)
    assert links[0].level == WARN and links[0].expected_gbps == 20.0


def test_socket_between_nodes_with_ib_present(inv):
    ib = [{"device": "mlx5_0", "port": "1", "rate_gbit": 200.0, "state": "ACTIVE"}]
    nodes = {"a": inv("10.0.0.1", ib_ports=ib), "b": inv("10.0.0.2", ib_ports=ib)}
    links = [LinkTransport(1, 2, True, "socket", False, 2), LinkTransport(0, 1, False, "p2p",
                                                                          False, 2)]
    [v] = transport_verdicts(links, {0: "a", 1: "a", 2: "b"}, nodes)
    assert v.level == WARN and "via NET/Socket (a->b)" in v.message and v.nodes == ("a", "b")
    # Without IB hardware, sockets are all there is: no warning.
    assert transport_verdicts(links, {0: "a", 1: "a", 2: "b"},
                              {"a": inv("10.0.0.1"), "b": inv("10.0.0.2")}) == []


def test_ib_without_gdrdma_is_noted():
    [v] = transport_verdicts([LinkTransport(0, 1, True, "ib", False, 4)], {0: "a", 1: "b"}, {})
    assert v.level == INFO and "nvidia-peermem" in v.message
