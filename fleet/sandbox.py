"""Running untrusted Python (a model's HumanEval completion) in a throw-away subprocess.

The program runs as ``python -I`` (no user site, no PYTHON* variables) in an empty temporary
directory, with a wall-clock timeout, CPU-seconds and address-space limits, an environment
holding only PATH (so no proxy variables), and, where the kernel allows it, no network at all:
``unshare --net`` (root) or ``unshare -rn`` (an unprivileged user namespace) puts it in a network
namespace with only a downed loopback. Whether that worked is checked at run time and reported
in every result (``network_isolated``).

The limits are set by a tiny bootstrap inside the child rather than by ``preexec_fn``, which is
unsafe in a process with threads (llama.cpp and asyncio have some).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT = 10.0
DEFAULT_MEMORY_BYTES = 1 << 30
_OUTPUT_TAIL = 400

_BOOTSTRAP = """\
import resource, sys
cpu, memory = int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
path = sys.argv[1]
sys.argv = [path]
with open(path) as f:
    source = f.read()
exec(compile(source, path, "exec"), {"__name__": "__main__"})
"""


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed program ended: ``status`` is passed, failed or timeout."""

    status: str
    returncode: int | None
    output: str
    network_isolated: bool
    isolation: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def summary(self) -> str:
        last = self.output.strip().splitlines()[-1:] if self.output.strip() else []
        detail = f": {last[0][:160]}" if last and not self.passed else ""
        return f"{self.status} ({self.isolation}){detail}"


@functools.cache
def network_isolation() -> tuple[str, ...]:
    """The command prefix that takes the network away, or () when this machine cannot."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    candidates = [(unshare, "--net")] if os.geteuid() == 0 else []
    candidates.append((unshare, "-rn"))
    for prefix in candidates:
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


def _clean_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


def run_python(
    program: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    isolate_network: bool = True,
) -> SandboxResult:
    """Run ``program``; passed means exit status 0 within ``timeout`` seconds."""
    prefix = network_isolation() if isolate_network else ()
    if prefix:
        isolation = f"no network: {Path(prefix[0]).name} {' '.join(prefix[1:])}"
    else:
        isolation = "network not isolated: environment without proxies only"
    cpu_seconds = max(1, int(timeout) + 1)
    with tempfile.TemporaryDirectory(prefix="smallfleet-sandbox-") as workdir:
        path = Path(workdir) / "program.py"
        path.write_text(program, encoding="utf-8")
        limits = [str(cpu_seconds), str(memory_bytes)]
        command = [*prefix, sys.executable, "-I", "-c", _BOOTSTRAP, str(path), *limits]
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            output, _ = process.communicate()
            return SandboxResult("timeout", None, _tail(output), bool(prefix), isolation)
    status = "passed" if process.returncode == 0 else "failed"
    return SandboxResult(status, process.returncode, _tail(output), bool(prefix), isolation)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _tail(output: bytes | None) -> str:
    return (output or b"").decode("utf-8", "replace")[-_OUTPUT_TAIL:]
