"""Bench results as JSON and a PNG: bars, or bars at the median with the min-max spread."""

import json
from contextlib import contextmanager
from pathlib import Path

COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]


@contextmanager
def _figure(results: dict, out_dir: str | Path, name: str, paths: list):
    """Writes the JSON, yields a matplotlib Axes, then saves the PNG; `paths` receives both."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / f"{name}.json", out / f"{name}.png"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True))
    import matplotlib

    matplotlib.use("Agg")  # headless: benches run on servers and in CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    yield ax
    plt.xticks(rotation=15)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    paths += [json_path, png_path]


def write_report(results: dict, out_dir: str | Path, name: str, bars: dict[str, float],
                 ylabel: str) -> tuple[Path, Path]:
    paths: list = []
    with _figure(results, out_dir, name, paths) as ax:
        labels, values = list(bars), list(bars.values())
        rects = ax.bar(labels, values, color=COLORS[: len(values)])
        ax.bar_label(rects, fmt="%.1f")
        ax.set_ylabel(ylabel)
        ax.set_title(name)
    return paths[0], paths[1]


def write_spread_report(results: dict, out_dir: str | Path, name: str,
                        series: dict[str, dict], ylabel: str) -> tuple[Path, Path]:
    """JSON + a PNG with one bar per series at its median and a whisker from min to max (the
    spread over repeats); every repeat is also drawn as a dot."""
    paths: list = []
    with _figure(results, out_dir, name, paths) as ax:
        labels = list(series)
        med = [series[k]["median"] for k in labels]
        err = [[m - series[k]["min"] for k, m in zip(labels, med)],
               [series[k]["max"] - m for k, m in zip(labels, med)]]
        rects = ax.bar(labels, med, yerr=err, capsize=6, color=COLORS[0], alpha=0.8)
        for i, k in enumerate(labels):
            ax.plot([i] * len(series[k]["all"]), series[k]["all"], "k.", alpha=0.6)
        ax.bar_label(rects, fmt="%.1f", label_type="center", color="white")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name} (median, min-max over {len(series[labels[0]]['all'])} repeats)")
    return paths[0], paths[1]
