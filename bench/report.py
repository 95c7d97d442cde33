"""Bench results as JSON and a PNG bar chart."""

import json
from pathlib import Path


def write_report(results: dict, out_dir: str | Path, name: str, bars: dict[str, float],
                 ylabel: str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / f"{name}.json", out / f"{name}.png"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels, values = list(bars), list(bars.values())
    rects = ax.bar(labels, values, color=["#4C72B0", "#DD8452", "#55A868", "#C44E52",
                                          "#8172B3", "#937860"][: len(values)])
    ax.bar_label(rects, fmt="%.1f")
    ax.set_ylabel(ylabel)
    ax.set_title(name)
    plt.xticks(rotation=15)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return json_path, png_path
