"""What every router subcommand shares: expected errors as one line and an exit code, and a
progress printer. The command modules (router/cli.py, router/eval_cli.py, fleet/cli.py,
fleet/plan_cli.py) import it; it imports none of them."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from router._errors import RouterError

Handler = Callable[[argparse.Namespace], int]


def guarded(handler: Handler) -> Handler:
    """``handler`` with a RouterError or OSError printed as one line (exit 2), Ctrl-C as 130."""

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


def progress(start: float) -> Callable[[str], None]:
    """Prints each message on stderr with the seconds since ``start``."""
    return lambda message: print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)
