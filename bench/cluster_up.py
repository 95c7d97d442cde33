"""`onenode bench cluster`: seconds from `cluster up --nodes N` to every node registered (image
already built). Target on the 2-core rig: <= 30 s for 3 nodes."""

import time
import uuid


def cluster_up_bench(nodes: int = 3, repeats: int = 3) -> dict:
    # Imported here: engine must not import cluster at module level (cluster is the outer layer).
    from cluster.local import down, up

    runs = []
    for _ in range(repeats):
        name = f"onbench-{uuid.uuid4().hex[:6]}"
        start = time.perf_counter()
        try:
            up(nodes, name=name, cpus_per_node=1, object_store_memory="128m")
            runs.append(time.perf_counter() - start)
        finally:
            down(name)
    return {"nodes": nodes, "seconds": runs, "min_s": min(runs),
            "median_s": sorted(runs)[len(runs) // 2], "target_s": 30.0}
