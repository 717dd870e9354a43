"""The router's subcommands for the `smallfleet` console script: train, route, eval.

gateway/cli.py calls add_commands(subparsers); `python -m router` builds a parser with it too.
Every handler returns an exit code and turns expected errors into one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from router._errors import RouterError

Handler = Callable[[argparse.Namespace], int]


def _guarded(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except RouterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    return run


def _progress(start: float) -> Callable[[str], None]:
    return lambda message: print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)


def _train(args: argparse.Namespace) -> int:
    from router.fit import FitConfig
    from router.train import train

    config = (
        FitConfig(seed=args.seed)
        if args.clusters is None
        else FitConfig(seed=args.seed, n_clusters=args.clusters)
    )
    artifact = train(
        args.data,
        args.models,
        args.out,
        tasks=args.tasks,
        folds=args.folds,
        config=config,
        default_model=args.default_model,
        progress=_progress(time.monotonic()),
    )
    cv = artifact.manifest.get("cv")
    if cv:
        from router.eval_cli import print_cv_summary

        print_cv_summary(artifact.manifest)
    print(f"artifact {artifact.version} written to {args.out}")
    return 0


def _read_questions(stream: Any) -> list[str]:
    questions = []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise RouterError(f"input line {number} is not valid JSON") from None
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise RouterError(f'input line {number} needs {{"question": "..."}}')
        questions.append(item["question"])
    return questions


def _route(args: argparse.Namespace) -> int:
    from router.routing import load_router

    router = load_router(args.artifact)
    alpha = args.alpha
    if args.preset is not None:
        if args.preset not in router.presets:
            raise RouterError(f"unknown preset {args.preset!r}; the artifact has {sorted(router.presets)}")
        alpha = router.presets[args.preset]
    candidates = args.candidates.split(",") if args.candidates else None
    for question in _read_questions(sys.stdin):
        decision = router.route(question, alpha=alpha, candidates=candidates)
        sys.stdout.write(json.dumps(decision.to_dict()) + "\n")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from router.eval_cli import run_eval

    return run_eval(args)


def _add_train(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train a router artifact from scored rows")
    p.add_argument("--data", type=Path, required=True, help="rows JSON: [{question, scores{model: 0..1}}]")
    p.add_argument("--models", type=Path, required=True, help="models JSON with input_price per 1M tokens")
    p.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    p.add_argument("--tasks", type=Path, help="optional tasks.jsonl (question -> task) to learn task groups")
    p.add_argument(
        "--folds", type=int, default=5, help="cross-validation folds recorded in the manifest (0: skip)"
    )
    p.add_argument("--default-model", help="model for out-of-distribution queries (default: best single)")
    p.add_argument("--clusters", type=int, help="number of k-means clusters (default: the CV winner)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_guarded(_train))


def _add_route(subparsers: Any) -> None:
    p = subparsers.add_parser("route", help="route questions.jsonl (stdin) to decisions.jsonl (stdout)")
    p.add_argument("--artifact", type=Path, required=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--alpha", type=float, help="1 = pure quality, 0 = pure cost (default: artifact's)")
    group.add_argument("--preset", help="a named alpha from the artifact, e.g. quality or cheap")
    p.add_argument("--candidates", help="comma-separated models to choose from (default: all)")
    p.set_defaults(func=_guarded(_route))


def _add_eval(subparsers: Any) -> None:
    p = subparsers.add_parser("eval", help="accuracy/cost of a router vs baselines, as a table and a PNG")
    p.add_argument("--data", type=Path, required=True, help="rows JSON to evaluate on")
    p.add_argument("--models", type=Path, required=True, help="models JSON with prices")
    p.add_argument("--artifact", type=Path, help="artifact to evaluate (not with --cv)")
    p.add_argument("--cv", action="store_true", help="k-fold cross-validation of a fresh router on --data")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--tasks", type=Path, help="tasks.jsonl for --cv training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-png", type=Path, help="write the accuracy-vs-cost plot here")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    p.set_defaults(func=_guarded(_eval))


def add_commands(subparsers: Any) -> None:
    """Register train, route and eval on an argparse subparsers object."""
    _add_train(subparsers)
    _add_route(subparsers)
    _add_eval(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m router", description="smallfleet router commands")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
