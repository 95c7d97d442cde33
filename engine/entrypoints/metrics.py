"""Prometheus metrics for `/metrics`, named like vLLM's with an `onenode:` prefix.

Scheduler state (running/waiting, KV usage, preemptions, prefix cache) is read from the engine's
latest stats snapshot at scrape time; token counters and latency histograms are recorded per
request by the server as outputs stream out. Each server owns its registry, so several servers in
one process (tests) do not collide.
"""

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# vLLM's buckets, so dashboards built for vLLM read the same.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
               10.0, 20.0, 40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
               120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


class _EngineStatsCollector:
    def __init__(self, async_engine, model_name: str):
        self.async_engine, self.model_name = async_engine, model_name

    def collect(self):
        stats, labels = self.async_engine.stats, [self.model_name]

        def gauge(name: str, doc: str, value: float):
            g = GaugeMetricFamily(f"onenode:{name}", doc, labels=["model_name"])
            g.add_metric(labels, float(value))
            return g

        def counter(name: str, doc: str, value: float):
            c = CounterMetricFamily(f"onenode:{name}", doc, labels=["model_name"])
            c.add_metric(labels, float(value))
            return c

        yield gauge("num_requests_running", "Requests in model execution batches.",
                    stats.get("num_running", 0))
        yield gauge("num_requests_waiting", "Requests waiting to be processed.",
                    stats.get("num_waiting", 0))
        yield gauge("kv_cache_usage_perc", "KV-cache usage; 1 means 100 percent.",
                    stats.get("kv_cache_usage", 0.0))
        yield gauge("num_kv_blocks", "KV-cache blocks allocated per rank.",
                    stats.get("num_blocks", 0))
        yield gauge("engine_alive", "1 while the engine loop and workers are alive.",
                    1 if self.async_engine.alive else 0)
        health = self.async_engine.health()
        yield from _health_metrics(labels, health)
        yield from _expert_metrics(stats, labels)
        yield from _replica_metrics(labels, health, stats)
        yield counter("num_preemptions", "Cumulative preemptions from the engine.",
                      stats.get("num_preemptions", 0))
        yield counter("prefix_cache_queries", "Prefix cache queries, in tokens.",
                      stats.get("prefix_cache_queries", 0))
        yield counter("prefix_cache_hits", "Prefix cache hits, in tokens.",
                      stats.get("prefix_cache_hits", 0))


def _health_metrics(labels: list[str], health):
    """Named as the runbook's alerts expect: restarts of the engine, and its state."""
    restarts = CounterMetricFamily("onenode_engine_restarts", "Engine rebuilds after a "
                                   "rank died or a step hung.", labels=["model_name"])
    restarts.add_metric(labels, float(health.restarts))
    yield restarts
    state = GaugeMetricFamily("onenode_engine_state", "1 for the engine's current state "
                              "(serving, degraded, recovering, failed).",
                              labels=["model_name", "state"])
    for s in health.states:
        state.add_metric(labels + [s], 1.0 if s == health.state else 0.0)
    yield state
    degraded = GaugeMetricFamily("onenode_engine_degraded", "1 while the engine serves a "
                                 "re-planned layout because a node is gone (--replan-after).",
                                 labels=["model_name"])
    degraded.add_metric(labels, 1.0 if health.degraded else 0.0)
    yield degraded


def _expert_metrics(stats: dict, labels: list[str]):
    """MoE models only: tokens routed to each EP rank's experts, and max / mean over ranks."""
    tokens = stats.get("expert_tokens")
    if not tokens:
        return
    c = CounterMetricFamily("onenode:expert_tokens", "(token, expert) pairs computed by each "
                            "expert-parallel rank's experts.", labels=["model_name", "ep_rank"])
    for rank, count in sorted(tokens.items()):
        c.add_metric(labels + [str(rank)], float(count))
    yield c
    g = GaugeMetricFamily("onenode:expert_imbalance", "Expert load max / mean over EP ranks "
                          "(1 is even).", labels=["model_name"])
    g.add_metric(labels, float(stats.get("expert_imbalance", 1.0)))
    yield g


def _replica_metrics(labels: list[str], health, stats: dict):
    """Data parallel: each replica's state and load, labelled `replica` (nothing for one engine)."""
    if not health.replicas:
        return
    from engine.loop.engine_client import REPLICA_STATES

    names = ["model_name", "replica"]
    state = GaugeMetricFamily("onenode_replica_state", "1 for each data-parallel replica's "
                              "current state (serving, recovering, down).",
                              labels=[*names, "state"])
    restarts = CounterMetricFamily("onenode_replica_restarts", "Rebuilds of each replica.",
                                   labels=names)
    running = GaugeMetricFamily("onenode:replica_num_requests_running",
                                "Requests running on each replica.", labels=names)
    waiting = GaugeMetricFamily("onenode:replica_num_requests_waiting",
                                "Requests waiting on each replica.", labels=names)
    kv = GaugeMetricFamily("onenode:replica_kv_cache_usage_perc",
                           "KV-cache usage of each replica; 1 means 100 percent.", labels=names)
    per = stats.get("replicas") or [{} for _ in health.replicas]
    for rep, st in zip(health.replicas, per):
        rl = labels + [str(rep.replica)]
        for s in REPLICA_STATES:
            state.add_metric(rl + [s], 1.0 if s == rep.state else 0.0)
        restarts.add_metric(rl, float(rep.restarts))
        running.add_metric(rl, float(st.get("num_running", 0)))
        waiting.add_metric(rl, float(st.get("num_waiting", 0)))
        kv.add_metric(rl, float(st.get("kv_cache_usage", 0.0)))
    migrations = CounterMetricFamily("onenode_request_migrations", "Requests resumed on a "
                                     "live replica after theirs died.", labels=["model_name"])
    migrations.add_metric(labels, float(stats.get("migrations_total", 0)))
    yield from (state, restarts, running, waiting, kv, migrations)


class ServerMetrics:
    def __init__(self, async_engine, model_name: str):
        self.registry = CollectorRegistry()
        self.model_name = model_name
        self.registry.register(_EngineStatsCollector(async_engine, model_name))
        kw = dict(labelnames=["model_name"], registry=self.registry)
        self.prompt_tokens = Counter("onenode:prompt_tokens", "Prefill tokens processed.", **kw)
        self.generation_tokens = Counter("onenode:generation_tokens",
                                         "Generation tokens processed.", **kw)
        self.request_success = Counter("onenode:request_success", "Finished requests.",
                                       labelnames=["model_name", "finished_reason"],
                                       registry=self.registry)
        self.ttft = Histogram("onenode:time_to_first_token_seconds", "Time to first token.",
                              buckets=TTFT_BUCKETS, **kw)
        self.itl = Histogram("onenode:inter_token_latency_seconds", "Inter-token latency.",
                             buckets=ITL_BUCKETS, **kw)
        self.e2e = Histogram("onenode:e2e_request_latency_seconds", "End-to-end request latency.",
                             buckets=E2E_BUCKETS, **kw)

    def timer(self) -> "RequestTimer":
        return RequestTimer(self)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestTimer:
    """Follows one request's cumulative outputs and records its tokens and latencies."""

    def __init__(self, metrics: ServerMetrics):
        self.m, self.label = metrics, metrics.model_name
        self.start = self.last = time.monotonic()
        self.num_tokens = 0
        self.first = True

    def on_output(self, out) -> None:
        total = sum(len(c.token_ids) for c in out.outputs)
        new = total - self.num_tokens
        if new <= 0:
            return
        now = time.monotonic()
        if self.first:
            self.first = False
            self.m.prompt_tokens.labels(self.label).inc(len(out.prompt_token_ids))
            self.m.ttft.labels(self.label).observe(now - self.start)
            new_after_first = new - 1
        else:
            new_after_first = new
        if new_after_first > 0:
            # n > 1: each completion got its token after the same gap.
            for _ in range(new_after_first):
                self.m.itl.labels(self.label).observe(now - self.last)
        self.m.generation_tokens.labels(self.label).inc(new)
        self.num_tokens, self.last = total, now

    def finish(self, out) -> None:
        self.m.e2e.labels(self.label).observe(time.monotonic() - self.start)
        for comp in out.outputs:
            self.m.request_success.labels(self.label, comp.finish_reason or "abort").inc()
