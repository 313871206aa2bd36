"""Build everything a benchmark needs, in its own process: ``python -m qbench.prepare``.

Training, conversion and compilation never share a process with timing.
After an in-process ``fit()`` and TFLite conversion, TensorFlow keeps its
thread pools and a fragmented heap, and latencies measured afterwards in the
same process came out 15-50 % slower than in a process that only loaded
cached artifacts, so a first run would disagree with the stored baselines.
The pytest session therefore runs this module as a child when anything is
missing from ``build/`` and only loads the results.  It is also a handy
command on its own, to warm the cache before timing::

    python -m qbench.prepare --profile full --variants all
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from qbench.errors import QBenchError

Progress = Callable[[str], None]


def prepare_in_subprocess(settings, dataset_fingerprint: str, progress: Progress) -> None:
    """Run this module on ``settings``; relay its progress; raise QBenchError if it fails."""
    from qbench.config import settings_to_argv

    cmd = [sys.executable, "-m", "qbench.prepare", *settings_to_argv(settings), "--expect-fingerprint", dataset_fingerprint]
    package_parent = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    error = None
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                if line.startswith("@progress "):
                    progress(line[len("@progress ") :])
                elif line.startswith("@error "):
                    error = line[len("@error ") :]
            rc = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: do not leave a trainer running
                proc.kill()
                proc.wait()
        if error is not None:
            raise QBenchError(error)
        if rc != 0:
            stderr.seek(0)
            tail = [ln for ln in stderr.read().splitlines() if ln.strip()][-1:] or ["no error output"]
            raise QBenchError(f"the preparation process failed (exit code {rc}): {tail[0][:300]}")


def main(argv: list[str] | None = None) -> int:
    from qbench.config import OPTIONS

    parser = argparse.ArgumentParser(prog="python -m qbench.prepare", description="Train/convert/compile into the qbench cache.")
    for name, type_, default, help_ in OPTIONS:
        parser.add_argument(f"--{name}", type=type_, default=default, help=help_)
    parser.add_argument("--expect-fingerprint", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(f"@progress {message}" if args.expect_fingerprint else f"[qbench] {message}", flush=True)

    try:
        from qbench.config import settings_from_options
        from qbench.session import QBenchSession

        settings = settings_from_options(lambda name: getattr(args, name.replace("-", "_")))
        session = QBenchSession(settings, progress, isolate=False, announce_dataset=not args.expect_fingerprint)
        if args.expect_fingerprint and session.dataset.fingerprint() != args.expect_fingerprint:
            raise QBenchError("the dataset changed while the benchmark was starting (fingerprint mismatch); run again")
        _ = session.model_info  # trains (or loads) the model
        for variant in settings.variants:
            try:
                session.artifact(variant)
            except Exception as exc:  # the parent retries in-process and reports it on that variant's tests
                progress(f"could not build {variant}: {type(exc).__name__}: {str(exc).strip()[:300]}")
    except QBenchError as exc:
        print(f"@error {exc}" if args.expect_fingerprint else f"qbench: {exc}", flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
