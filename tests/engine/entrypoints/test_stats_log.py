from engine.entrypoints.stats_log import StatsLogger


def test_line_reports_throughput_queue_kv_and_prefix_hits_only_while_busy():
    stats = {"num_running": 0, "num_waiting": 0, "kv_cache_usage": 0.0, "prompt_tokens_total": 0,
             "generation_tokens_total": 0, "prefix_cache_queries": 0, "prefix_cache_hits": 0}
    logger = StatsLogger(lambda: stats)
    assert logger.line() is None  # idle: nothing logged
    stats.update(num_running=2, num_waiting=1, kv_cache_usage=0.125, prompt_tokens_total=100,
                 generation_tokens_total=40, prefix_cache_queries=100, prefix_cache_hits=40)
    line = logger.line()
    for part in ("Avg prompt throughput:", "tokens/s, Avg generation throughput:",
                 "Running: 2 reqs, Swapped: 0 reqs, Pending: 1 reqs", "KV cache usage: 12.5%",
                 "Prefix cache hit rate: 40.0%"):
        assert part in line
    stats.update(num_running=0, num_waiting=0)
    assert logger.line() is None  # no new tokens and nothing queued


def test_line_shows_each_data_parallel_replica():
    stats = {"num_running": 3, "num_waiting": 1, "generation_tokens_total": 5,
             "replicas": [{"state": "serving", "num_running": 3, "num_waiting": 1},
                          {"state": "recovering", "num_running": 0, "num_waiting": 0}]}
    logger = StatsLogger(lambda: stats)
    stats = {**stats, "generation_tokens_total": 10}
    assert logger.line().endswith("Replicas: 0 serving (4 reqs), 1 recovering (0 reqs)")


def test_line_names_the_engine_state_while_not_serving():
    from engine.loop.engine_client import EngineHealth

    health = EngineHealth(alive=False, state="failed", states=(), message="recovery did not "
                          "succeed within 300s", retry_after_s=60, restarts=2)
    logger = StatsLogger(lambda: {}, read_health=lambda: health)
    assert logger.line() == "Engine failed: recovery did not succeed within 300s"
