from engine.core.expert_load import ExpertLoad, imbalance
from engine.entrypoints.stats_log import StatsLogger


def test_imbalance_is_max_over_mean():
    assert imbalance({0: 30, 1: 10}) == 1.5
    assert imbalance({0: 0, 1: 0}) == 1.0 and imbalance({}) == 1.0


class _Executor:
    def __init__(self):
        self.calls = 0

    def collective_rpc(self, method):
        assert method == "expert_load"
        self.calls += 1
        return [(0, 5), (1, 3), (0, 7), (1, 1)]  # two stages of EP=2


def test_ranks_summed_over_stages_and_never_read_while_steps_are_in_flight():
    ex = _Executor()
    load = ExpertLoad(ex)
    assert load.snapshot(idle=False) == {"expert_tokens": {}, "expert_imbalance": 1.0}
    assert ex.calls == 0
    snap = load.snapshot(idle=True)
    assert snap["expert_tokens"] == {0: 12, 1: 4} and snap["expert_imbalance"] == 1.5
    load.snapshot(idle=True)
    assert ex.calls == 1  # throttled


def test_stats_line_shows_imbalance_for_moe_only():
    stats = {"num_running": 1, "expert_tokens": {0: 3, 1: 1}, "expert_imbalance": 1.5}
    assert StatsLogger(lambda: stats).line().endswith("Expert imbalance: 1.50")
    assert "Expert" not in StatsLogger(lambda: {"num_running": 1}).line()


def test_metrics_export_tokens_per_ep_rank_and_imbalance():
    from engine.entrypoints.metrics import ServerMetrics

    from engine.loop.engine_client import EngineHealth

    class _Async:
        alive = True
        stats = {"expert_tokens": {0: 30, 1: 10}, "expert_imbalance": 1.5}

        def health(self):
            return EngineHealth(True, "serving", ("serving",), None, None, 0)

    text = ServerMetrics(_Async(), "m").render().decode()
    assert 'onenode:expert_tokens_total{ep_rank="0",model_name="m"} 30.0' in text
    assert 'onenode:expert_imbalance{model_name="m"} 1.5' in text
