from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_router_and_its_cli_stays_light() -> None:
    code = (
        "import sys, router, router.cli\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'model2vec', 'sklearn', 'matplotlib')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_routing_never_loads_torch() -> None:
    code = (
        "import sys\n"
        "from router import DEFAULT_ARTIFACT, load_router\n"
        "load_router(DEFAULT_ARTIFACT).route('What is 2 + 2?')\n"
        "print('torch' in sys.modules, 'sklearn' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False False"
