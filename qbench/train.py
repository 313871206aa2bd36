"""Train qbench's MobileNetV2 in a child process: ``python -m qbench.train ...``.

Training and timing do not share a process.  After an in-process ``fit()``
TensorFlow keeps its thread pools and a fragmented heap, and the latencies
measured afterwards in the same process came out up to 50 % slower (and
noisier) than in a process that only loaded the cached model, which would
make a first run disagree with the stored baselines.  The child writes the
model atomically and reports progress on stdout (``@progress ...`` lines).
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


def train_in_subprocess(settings, dataset, out_path: Path, progress: Progress) -> float:
    """Run :func:`qbench.model.train_model` in a fresh interpreter; return training seconds."""
    cmd = [
        sys.executable,
        "-m",
        "qbench.train",
        "--dataset", settings.dataset,
        "--profile", settings.profile.name,
        "--seed", str(settings.seed),
        "--test-fraction", repr(settings.test_fraction),
        "--build-dir", str(settings.build_dir),
        "--out", str(out_path),
        "--expect-fingerprint", dataset.fingerprint(),
    ]  # fmt: skip
    if settings.dataset_root is not None:
        cmd += ["--dataset-root", str(settings.dataset_root)]
    package_parent = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    seconds, error = None, None
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                if line.startswith("@progress "):
                    progress(line[len("@progress ") :])
                elif line.startswith("@seconds "):
                    seconds = float(line.split()[1])
                elif line.startswith("@error "):
                    error = line[len("@error ") :]
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if error is not None:
            raise QBenchError(error)
        if rc != 0 or seconds is None:
            stderr.seek(0)
            tail = [ln for ln in stderr.read().splitlines() if ln.strip()][-1:] or ["no error output"]
            raise QBenchError(f"training process failed (exit code {rc}): {tail[0][:300]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qbench.train", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--dataset-root", default=None)
    parser.add_argument("--profile", default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--out", required=True, help="where to write the trained .keras model")
    parser.add_argument("--expect-fingerprint", default=None, help="abort unless the dataset hashes to this")
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(f"@progress {message}", flush=True)

    try:
        from qbench.config import make_settings
        from qbench.model import train_model
        from qbench.session import load_session_dataset

        settings = make_settings(
            dataset=args.dataset,
            dataset_root=args.dataset_root,
            profile=args.profile,
            seed=args.seed,
            test_fraction=args.test_fraction,
            build_dir=args.build_dir,
        )
        dataset = load_session_dataset(settings, settings.profile.image_size, lambda m: None)
        if args.expect_fingerprint and dataset.fingerprint() != args.expect_fingerprint:
            raise QBenchError("the dataset changed while training started (fingerprint mismatch); run again")
        seconds = train_model(dataset, settings.profile, settings.seed, Path(args.out), progress)
    except QBenchError as exc:
        print(f"@error {exc}", flush=True)
        return 3
    print(f"@seconds {seconds:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
