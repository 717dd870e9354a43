"""Fleet evaluation: labelled benchmarks run through each fleet model's real backend.

`smallfleet fleet eval` (fleet/cli.py) loads the benchmarks (benchmarks.py), asks each
model (runner.py), grades the answers (grading.py, sandbox.py) and writes router training rows
plus a per-model, per-task table (tables.py). See docs/fleet-eval.md.
"""

from __future__ import annotations
