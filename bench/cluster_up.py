"""Seconds from `onenode cluster up --nodes 3` to all nodes registered (same as
`onenode bench cluster`). Run: .venv/bin/python bench/cluster_up.py"""

import json

from engine.bench.cluster_up import cluster_up_bench

if __name__ == "__main__":
    print(json.dumps(cluster_up_bench(), indent=2))
