"""The router's subcommands for the `smallfleet` console script: train, route, eval, fleet, plan.

gateway/cli.py calls add_commands(subparsers); `python -m router` builds a parser with it too.
Every handler returns an exit code and turns expected errors into one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from router._errors import RouterError
from router.cli_support import guarded, progress


def _fit_config(args: argparse.Namespace) -> Any:
    from router.fit import FitConfig

    if args.clusters is None:
        return FitConfig(seed=args.seed)
    return FitConfig(seed=args.seed, n_clusters=args.clusters)


def _train_into(args: argparse.Namespace, out: Path, holdout: float) -> Any:
    from router.train import train

    if args.data is None or args.models is None:
        raise RouterError("train needs --data ROWS.json and --models MODELS.json")
    artifact = train(
        args.data,
        args.models,
        out,
        tasks=args.tasks,
        folds=args.folds,
        config=_fit_config(args),
        default_model=args.default_model,
        holdout=holdout,
        progress=progress(time.monotonic()),
    )
    if artifact.manifest.get("cv"):
        from router.eval_cli import print_cv_summary

        print_cv_summary(artifact.manifest)
    return artifact


def _train(args: argparse.Namespace) -> int:
    if args.promote:
        return _train_and_promote(args)
    artifact = _train_into(args, args.out, args.holdout or 0.0)
    print(f"artifact {artifact.version} written to {args.out}")
    return 0


def _train_and_promote(args: argparse.Namespace) -> int:
    """--out is a router directory: train into versions/<version>, then promote if not worse."""
    import shutil

    from router import promote

    holdout = promote.DEFAULT_HOLDOUT if args.holdout is None else args.holdout
    if holdout <= 0:
        raise RouterError("--promote compares on held-out rows: --holdout must be above 0")
    staging = promote.staging_dir(args.out)
    try:
        artifact = _train_into(args, staging, holdout)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    candidate = promote.keep_version(staging, artifact.version)
    print(f"artifact {artifact.version} written to {candidate}")
    decision = _decide(args, candidate, holdout)
    current = promote.current_artifact(args.out)
    if decision.promote:
        promote.point_current(args.out, candidate)
        print(f"promoted {artifact.version} to {args.out / promote.CURRENT}: {decision.reason}")
    else:
        name = current.name if current else "-"
        print(f"kept current {name}; candidate {artifact.version} not promoted: {decision.reason}")
    return 0


def _decide(args: argparse.Namespace, candidate: Path, holdout: float) -> Any:
    from router import promote
    from router._errors import ArtifactError

    current = promote.current_artifact(args.out)
    if current is None:
        return promote.decide(None)
    try:
        comparison = promote.compare(candidate, current, args.data, args.models, holdout)
    except ArtifactError as exc:
        return promote.Decision(True, f"the current artifact cannot be loaded ({exc})")
    print(promote.format_comparison(comparison))
    return promote.decide(comparison, args.tolerance)


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
    from router.promote import DEFAULT_HOLDOUT, DEFAULT_TOLERANCE

    p = subparsers.add_parser("train", help="train a router artifact from scored rows")
    p.add_argument(
        "--data",
        type=Path,
        help="rows JSON: [{question, scores{model: 0..1}}] (required); "
        "a row may score some of the models only",
    )
    p.add_argument("--models", type=Path, help="models JSON with input_price per 1M tokens (required)")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="artifact directory to write (with --promote: a router directory, see below)",
    )
    p.add_argument("--tasks", type=Path, help="optional tasks.jsonl (question -> task) to learn task groups")
    p.add_argument(
        "--folds", type=int, default=5, help="cross-validation folds recorded in the manifest (0: skip)"
    )
    p.add_argument("--default-model", help="model for out-of-distribution queries (default: best single)")
    p.add_argument("--clusters", type=int, help="number of k-means clusters (default: the CV winner)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--promote",
        action="store_true",
        help="--out is a router directory: write OUT/versions/<version>/ and point OUT/current at it "
        "if it is not worse than the current one on the held-out rows",
    )
    p.add_argument(
        "--holdout",
        type=float,
        help=f"fraction of full rows held out of training by hash (default: {DEFAULT_HOLDOUT} with "
        "--promote, else 0)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="promote unless the candidate's quality-preset accuracy is lower by more than this",
    )
    p.set_defaults(func=guarded(_train))


def _add_route(subparsers: Any) -> None:
    p = subparsers.add_parser("route", help="route questions.jsonl (stdin) to decisions.jsonl (stdout)")
    p.add_argument("--artifact", type=Path, required=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--alpha", type=float, help="1 = pure quality, 0 = pure cost (default: artifact's)")
    group.add_argument("--preset", help="a named alpha from the artifact, e.g. quality or cheap")
    p.add_argument("--candidates", help="comma-separated models to choose from (default: all)")
    p.set_defaults(func=guarded(_route))


def _add_eval(subparsers: Any) -> None:
    p = subparsers.add_parser("eval", help="accuracy/cost of a router vs baselines, as a table and a PNG")
    p.add_argument("--data", type=Path, required=True, help="rows JSON to evaluate on")
    p.add_argument("--models", type=Path, required=True, help="models JSON with prices")
    p.add_argument("--artifact", type=Path, help="artifact to evaluate (not with --cv)")
    p.add_argument(
        "--compare",
        type=Path,
        metavar="CURRENT",
        help="compare --artifact (the candidate) with this artifact on the same rows, side by side",
    )
    p.add_argument("--holdout", type=float, help="with --compare: only the held-out slice of --data")
    p.add_argument("--tolerance", type=float, help="with --compare: also apply the promotion rule")
    p.add_argument("--cv", action="store_true", help="k-fold cross-validation of a fresh router on --data")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--tasks", type=Path, help="tasks.jsonl for --cv training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-png", type=Path, help="write the accuracy-vs-cost plot here")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    p.set_defaults(func=guarded(_eval))


def add_commands(subparsers: Any) -> None:
    """Register train, route and eval on an argparse subparsers object (``fleet`` and ``plan``
    are the fleet package's: gateway/cli.py registers them)."""
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
