"""Single-query routing latency of the default router artifact, embedding included.

    python benchmarks/router_latency.py [--artifact DIR] [--queries 1000] [--alpha 1.0]

Routes real questions from router/data/train.json one at a time (as the gateway does) and
prints the median and p99 wall time of router.route().
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(artifact: Path, n_queries: int, alpha: float, warmup: int = 50) -> list[float]:
    from router import load_router

    router = load_router(artifact)
    rows = json.loads((REPO / "router" / "data" / "train.json").read_text(encoding="utf-8"))
    questions = [row["question"] for row in rows[:: max(1, len(rows) // n_queries)]][:n_queries]
    for question in questions[:warmup]:
        router.route(question, alpha=alpha)
    timings = []
    for question in questions:
        start = time.perf_counter()
        router.route(question, alpha=alpha)
        timings.append(time.perf_counter() - start)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=REPO / "router" / "artifacts" / "default")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=1.0)
    args = parser.parse_args()
    if str(REPO) not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, str(REPO))
    start = time.perf_counter()
    from router import load_router

    load_router(args.artifact)
    load_s = time.perf_counter() - start
    timings = sorted(measure(args.artifact, args.queries, args.alpha))
    ms = [t * 1000 for t in timings]
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    print(f"artifact load (first, incl. imports): {load_s * 1000:.0f} ms")
    print(
        f"single-query route() over {len(ms)} questions: median {statistics.median(ms):.3f} ms, "
        f"p99 {p99:.3f} ms, mean {statistics.fmean(ms):.3f} ms, max {ms[-1]:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
