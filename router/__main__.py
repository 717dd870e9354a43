"""`python -m router train|route|eval ...` (the same commands as `smallfleet`)."""

from __future__ import annotations

from router.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
