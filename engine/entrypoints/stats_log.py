"""The periodic engine-statistics line, like vLLM's: every interval while there is work,

  Avg prompt throughput: 52.0 tokens/s, Avg generation throughput: 31.5 tokens/s, Running: 2 reqs,
  Swapped: 0 reqs, Pending: 1 reqs, KV cache usage: 12.5%, Prefix cache hit rate: 40.0%

and, with data-parallel replicas, `, Replicas: 0 serving (2 reqs), 1 recovering (0 reqs)`.

read from the engine's counters (LLMEngine.stats(), refreshed by AsyncEngine after each step).
While the engine is not serving, the line names its state instead (`Engine recovering: ...`,
`Engine failed: ...`), every interval, so a log tail shows an outage as it goes on.
`--disable-log-stats` turns it off. onenode never swaps to CPU, so Swapped is always 0.
"""

import asyncio
import time

from engine.logger import init_logger

log = init_logger("onenode.stats")


def _replicas(stats: dict) -> str:
    """Data parallel: `, Replicas: 0 serving (3 reqs), 1 recovering (0 reqs)`."""
    per = stats.get("replicas")
    if not per:
        return ""
    return ", Replicas: " + ", ".join(
        f"{r} {s.get('state', '?')} ({s.get('num_running', 0) + s.get('num_waiting', 0)} reqs)"
        for r, s in enumerate(per))


class StatsLogger:
    def __init__(self, read_stats, interval_s: float = 10.0, read_health=None):
        self.read_stats, self.interval_s, self.read_health = read_stats, interval_s, read_health
        self._last = dict(read_stats())
        self._last_t = time.monotonic()

    def line(self) -> str | None:
        """The line for the interval since the last call; None when the engine was idle."""
        health = self.read_health() if self.read_health is not None else None
        if health is not None and not health.alive:
            return f"Engine {health.state}: {health.message}"
        now, stats = time.monotonic(), dict(self.read_stats())
        prev, dt = self._last, max(now - self._last_t, 1e-6)
        self._last, self._last_t = stats, now
        prompt = stats.get("prompt_tokens_total", 0) - prev.get("prompt_tokens_total", 0)
        gen = stats.get("generation_tokens_total", 0) - prev.get("generation_tokens_total", 0)
        running, waiting = stats.get("num_running", 0), stats.get("num_waiting", 0)
        if not (prompt or gen or running or waiting):
            return None
        queries = stats.get("prefix_cache_queries", 0)
        hit_rate = stats.get("prefix_cache_hits", 0) / queries if queries else 0.0
        experts = f", Expert imbalance: {stats['expert_imbalance']:.2f}" \
            if stats.get("expert_tokens") else ""
        return (f"Avg prompt throughput: {prompt / dt:.1f} tokens/s, Avg generation throughput: "
                f"{gen / dt:.1f} tokens/s, Running: {running} reqs, Swapped: 0 reqs, Pending: "
                f"{waiting} reqs, KV cache usage: {100 * stats.get('kv_cache_usage', 0):.1f}%, "
                f"Prefix cache hit rate: {100 * hit_rate:.1f}%{experts}{_replicas(stats)}"
                + (f", Degraded: {health.degraded}" if health and health.degraded else ""))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            text = self.line()
            if text:
                log.info(text)
