"""How wide the 95% speed-up interval is for each zoo model, at batch 1 and 256, under several latency settings.

The interval comes from the paired interleaved blocks (`compressbench.ranking.intervals.speedup_interval`), so it
narrows with more blocks and longer ones, and the measuring time grows with them. One compression per zoo model
(the shipped baselines; a technique that changes the work done, so the speed-up is real), measured under each
setting; the half-width is reported on the log scale (the interval is [s / f, s * f]: ±(f - 1)). Run alone on a
quiet machine: anything else running widens every interval.

    .venv/bin/python benchmarks/bench_intervals.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import compressbench as cb

CASES = [
    ("fashion-mnist", "mlp", "quant.dynamic"),
    ("fashion-mnist", "lenet5", "prune.channels-50"),
    ("fashion-mnist", "resnet", "quant.static"),
    ("mnist1d", "conv1d", "quant.dynamic"),
]
SETTINGS = {
    "6 x 0.1 s (the default study's)": cb.LatencySettings(warmup_s=0.3, blocks=6, block_s=0.1),
    "12 x 0.1 s": cb.LatencySettings(warmup_s=0.3, blocks=12, block_s=0.1),
    "15 x 0.2 s (the package default)": cb.LatencySettings(),
    "8 x 0.1 s, then up to 32 until ±5%": cb.LatencySettings(
        warmup_s=0.3, blocks=8, block_s=0.1, target_half_width=0.05
    ),
}
RESULTS = Path(__file__).parent / "results" / "intervals.json"


def half_width(interval: list[float]) -> float:
    """The interval's half-width as a fraction on the log scale: [s / f, s * f] gives f - 1."""
    low, high = interval
    return (high / low) ** 0.5 - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[model for _, model, _ in CASES], help="zoo models to measure")
    parser.add_argument(
        "--settings",
        nargs="+",
        type=int,
        default=list(range(len(SETTINGS))),
        help="which settings, by position (0-based); the others' stored records are kept",
    )
    args = parser.parse_args()
    chosen = [label for number, label in enumerate(SETTINGS) if number in args.settings]
    records = [r for r in json.loads(RESULTS.read_text()) if r["settings"] not in chosen] if RESULTS.is_file() else []
    for label, latency in ((label, SETTINGS[label]) for label in chosen):
        for dataset, model, recipe in (case for case in CASES if case[1] in args.models):
            started = time.perf_counter()
            result = cb.compress(dataset, model, recipe, measure=cb.MeasureSettings(latency=latency))
            record = {
                "settings": label,
                "case": f"{dataset} / {model} / {recipe}",
                "speedup": result.speedup,
                "speedup_ci": result.speedup_ci,
                "half_width_pct": {b: round(100 * half_width(ci), 2) for b, ci in result.speedup_ci.items()},
                "blocks": {b: result.candidate.latency[b]["blocks"] for b in result.speedup},
                "measure_seconds": round(result.phase_seconds["measure"], 1),
                "wall_seconds": round(time.perf_counter() - started, 1),
                "mechanism": result.speed_mechanism,
                "cpu": result.environment["cpu"],
            }
            records.append(record)
            widths = ", ".join(f"b{b} {result.speedup[b]:.2f}x ±{w:.1f}% ({record['blocks'][b]} blocks)"
                               for b, w in record["half_width_pct"].items())  # fmt: skip
            print(f"{label:34s} {record['case']:42s} {widths}; measuring {record['measure_seconds']} s", flush=True)
    RESULTS.write_text(json.dumps(records, indent=1) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
