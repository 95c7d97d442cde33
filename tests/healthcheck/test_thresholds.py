import pytest

from healthcheck.thresholds import (
    EXPECTED_GBPS,
    ib_kind,
    judge,
    nccl_kind,
    parse_expect,
)
from onenode.errors import ConfigError


def test_overrides_keep_the_other_defaults():
    table = parse_expect(["socket=2.5", "gloo=0.2,ib-ndr=45"])
    assert table["socket"] == 2.5 and table["gloo"] == 0.2 and table["ib-ndr"] == 45
    assert table["nvlink"] == EXPECTED_GBPS["nvlink"]


@pytest.mark.parametrize("item", ["warp=3", "socket=fast", "socket"])
def test_bad_overrides_name_the_kinds(item):
    with pytest.raises(ConfigError, match="KIND=GBPS|unknown link kind"):
        parse_expect([item])


@pytest.mark.parametrize("rate, kind", [(400, "ib-ndr"), (200, "ib-hdr"), (100, "eth-100g"),
                                        (56, "ib")])
def test_ib_kind_from_port_rate(rate, kind):
    assert ib_kind(rate) == kind


@pytest.mark.parametrize("transport, inter, rate, nvlink, kind", [
    ("ib", True, 400, False, "ib-ndr"), ("socket", True, 0, False, "socket"),
    ("p2p", False, 0, True, "nvlink"), ("p2p", False, 0, False, "pcie"),
    ("shm", False, 0, False, "shm"), ("other", True, 0, False, "socket"),
])
def test_nccl_kind(transport, inter, rate, nvlink, kind):
    assert nccl_kind(transport, inter, rate, nvlink) == kind


def test_judge_flags_under_80_percent():
    assert judge(0.79, "socket", EXPECTED_GBPS) == (True, 1.0)
    assert judge(0.81, "socket", EXPECTED_GBPS) == (False, 1.0)
    assert judge(0.0, "unknown", EXPECTED_GBPS) == (False, 0.0)
