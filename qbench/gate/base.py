"""The same-job base: another revision (``--qbench-base REF``) or another model file
(``--qbench-base-model PATH``), built and measured in this run beside the candidate.

Why: latency ratios and absolute times do not carry from one machine to
another (native / tflite-fp32 was 24.5x on an AVX2-only VM and 10.5x on an
AVX-512 VNNI one), and most CI runners have never stored a run.  A gate that
is right on any runner measures the base itself, in the same job, interleaved
with the candidate, as asv's ``continuous`` and Google Benchmark's
``compare.py`` do.

For REF, the commit's tracked files are exported (``git archive``) into
``<build-dir>/base/<sha>/src`` and built there by that revision's own
``qbench prepare`` (its ``qbench`` package where the checkout has
one, else the installed one), with the candidate's options and a cache of its
own (``<build-dir>/base/<sha>/build``).  A relative ``--qbench-model-path``
therefore names REF's model file.  Each base variant runs in a worker of its
own started in that checkout, so REF's runner code times REF's artifact; the
session interleaves the twins with the candidate variants in one campaign
(:meth:`qbench.session.QBenchSession.latency_blocks`) and the gate pairs them
round by round (:func:`qbench.gate.verdicts.base_latency_verdict`).

With ``--qbench-base-model`` the base is built by this code from the other
model file, in the candidate's build dir (artifacts are named by content).
A base that fails to build or run is one line naming the base and the step,
and the variant's gate fails: it is never a pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qbench.core.errors import QBenchError, one_line
from qbench.core.fsutil import file_lock, stable_hash


def _git(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise OSError((proc.stderr.strip().splitlines() or [f"git {args[0]} failed"])[-1])
    return proc.stdout.strip()


@dataclass(frozen=True)
class BaseSpec:
    """What the candidate is compared with: a revision of the repository, or a model file."""

    ref: str | None = None
    sha: str | None = None
    top: Path | None = None  # the repository's top level
    prefix: str = ""  # where the run started, relative to ``top`` (git rev-parse --show-prefix)
    model_path: str | None = None

    @property
    def label(self) -> str:
        if self.sha is not None:
            return f"base {self.sha[:12]}" + (f" ({self.ref})" if self.ref and not self.sha.startswith(self.ref) else "")
        return f"base model {self.model_path}"

    @property
    def mode(self) -> str:
        """How gate.json and the verdict line name this mode."""
        return f"same-job base {self.sha}" if self.sha is not None else f"same-job base model {self.model_path}"


def resolve(ref: str | None, model_path: str | None, cwd: Path | None = None) -> BaseSpec | None:
    """The base the options ask for (``None``: no same-job base); every mistake one sentence."""
    if ref and model_path:
        raise QBenchError("--qbench-base and --qbench-base-model exclude each other: compare with a revision or a model file")
    if model_path:
        from qbench.config import check_model_file

        return BaseSpec(model_path=str(check_model_file(Path(model_path)).resolve()))
    if not ref:
        return None
    cwd = Path(cwd or os.getcwd())
    if shutil.which("git") is None:
        raise QBenchError(f"--qbench-base {ref} needs git on PATH (or compare two model files with --qbench-base-model)")
    try:
        top = Path(_git(["rev-parse", "--show-toplevel"], cwd))
        prefix = _git(["rev-parse", "--show-prefix"], cwd)
    except OSError:
        raise QBenchError(
            f"--qbench-base {ref}: {cwd} is not inside a git repository (compare two model files with --qbench-base-model)"
        ) from None
    try:
        sha = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], top)
    except OSError:
        raise QBenchError(
            f"--qbench-base {ref}: no such revision in {top} (a shallow CI checkout? fetch full history, "
            "e.g. actions/checkout with fetch-depth: 0)"
        ) from None
    return BaseSpec(ref=ref, sha=sha, top=top, prefix=prefix)


def export_revision(spec: BaseSpec, dest: Path, progress) -> Path:
    """The tracked files of ``spec.sha`` under ``dest/src`` (made once, whole or not at all; concurrent runs wait)."""
    src = dest / "src"
    stamp = src / ".qbench-revision"

    def ready() -> bool:
        return stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == spec.sha

    if ready():
        return src
    with file_lock(dest / "checkout.lock", lambda: progress(f"{spec.label}: waiting for another run's checkout")):
        if ready():
            return src
        progress(f"{spec.label}: checking out {spec.sha[:12]} into {src}")
        tmp = Path(tempfile.mkdtemp(prefix=".src.", dir=dest))
        try:
            proc = subprocess.Popen(
                ["git", "archive", "--format=tar", spec.sha], cwd=spec.top, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            assert proc.stdout is not None
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                tar.extractall(tmp, filter="data")
            err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
            if proc.wait() != 0:
                raise QBenchError(f"{spec.label}: git archive failed: {err or 'no message'}", fatal=False)
            (tmp / ".qbench-revision").write_text(spec.sha + "\n", encoding="utf-8")
            if src.exists():
                shutil.rmtree(src)
            os.replace(tmp, src)
        except (OSError, tarfile.TarError) as exc:
            raise QBenchError(f"{spec.label}: the checkout into {src} failed: {exc}", fatal=False) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return src


class BaseTwins:
    """The base's artifacts, workers and predictions: built once per run, every variant's twin on demand."""

    def __init__(self, spec: BaseSpec, settings, progress):
        self.spec = spec
        self.settings = settings
        self.progress = progress
        self._manifest: dict | None = None
        self._error: QBenchError | None = None
        self._runners: dict = {}
        self._predictions: dict = {}
        self.failures: dict[str, QBenchError] = {}
        self.code_root: Path | None = None
        self.points: dict[str, int] = {}  # swept variant -> the point the candidate's sweep chose (use_point)

    @property
    def label(self) -> str:
        return self.spec.label

    def fail(self, variant: str, step: str, error: Exception) -> QBenchError:
        """Remember that ``variant``'s twin failed at ``step``; later asks fail with the same line."""
        from qbench.core.errors import one_line

        message = str(error) if isinstance(error, QBenchError) else one_line(error)
        if not message.startswith(f"{variant} ("):
            message = f"{variant}: {self.label} failed during {step}: {message}"
        return self.failures.setdefault(variant, QBenchError(message, fatal=False))

    # ------------------------------------------------------------- build
    def _build(self) -> dict:
        from qbench import backends
        from qbench.config import settings_to_argv
        from qbench.measure.isolation import child_env, describe_exit, stderr_tail

        spec, s = self.spec, self.settings
        overrides: dict = {"report_dir": None}
        if s.dataset_root is not None:
            overrides["dataset_root"] = str(Path(s.dataset_root).resolve())
        if spec.sha is not None:
            dest = Path(s.build_dir).resolve() / "base" / spec.sha[:12]
            dest.mkdir(parents=True, exist_ok=True)
            self.code_root = export_revision(spec, dest, self.progress)
            workdir = self.code_root / spec.prefix
            build_dir = dest / "build"
        else:
            workdir, build_dir = Path.cwd(), Path(s.build_dir).resolve()
            overrides["model_path"] = spec.model_path
        overrides["build_dir"] = str(build_dir)
        argv = settings_to_argv(s, **overrides)
        manifest = build_dir / "base-manifests" / f"{stable_hash(argv, spec.sha, os.getpid())}.json"
        cmd = [
            sys.executable,
            "-m",
            "qbench.cli",
            "prepare",
            *argv,
            "--variants",
            ",".join(s.variants),
            "--manifest",
            str(manifest),
        ]
        for origin in backends.origins(s.variants):  # variants a plugin registers (-p ...), imported there too
            cmd += ["--import-origin", origin]
        self.progress(f"{self.label}: building {', '.join(s.variants)} with its own code (cached in {build_dir})")
        errors = []
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
            try:
                proc = subprocess.Popen(
                    cmd, cwd=workdir, env=child_env(self.code_root), stdout=subprocess.PIPE, stderr=stderr, text=True
                )
            except OSError as exc:
                raise QBenchError(f"{self.label}: could not start its build in {workdir}: {exc}", fatal=False) from None
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    line = line.rstrip("\n")
                    if line.startswith("[qbench] "):
                        self.progress(f"{self.label}: {line[9:]}")
                    elif line.startswith("qbench: "):
                        errors.append(line[8:])
                rc = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            stderr.seek(0)
            tail = stderr_tail(stderr.read())
        if rc != 0 or not manifest.is_file():
            why = errors[-1] if errors else f"{describe_exit(rc)}: {tail}"
            if (rc == 2 and "--manifest" in tail) or "No module named qbench.cli" in tail:
                why = "it has no `qbench prepare --manifest` (a revision from before the same-job gate)"
            raise QBenchError(f"{self.label}: the build failed: {why}", fatal=False)
        data = json.loads(manifest.read_text(encoding="utf-8"))
        manifest.unlink()
        return data

    def manifest(self) -> dict:
        if self._manifest is None:
            if self._error is not None:
                raise self._error
            try:
                self._manifest = self._build()
            except QBenchError as exc:
                self._error = exc
                raise
        return self._manifest

    def use_point(self, variant: str, point) -> None:
        """The twin of a swept variant is the base's model at the point the candidate's sweep chose."""
        self.points[variant] = point

    def artifact(self, variant: str) -> dict:
        if variant in self.failures:
            raise self.failures[variant]
        try:
            manifest = self.manifest()
        except QBenchError as exc:
            raise self.fail(variant, "build", exc) from None
        entry = manifest["variants"].get(variant)
        if entry is None and variant in manifest.get("points", {}):
            entry = manifest["points"][variant].get(str(self.points.get(variant)))
            if entry is None:
                built = ", ".join(manifest["points"][variant])
                why = f"no model at the point the sweep chose ({self.points.get(variant)}; it built {built})"
                raise self.fail(variant, "build", QBenchError(why))
        if entry is None:
            why = manifest.get("missing", {}).get(variant, "not built")
            raise self.fail(variant, "build", QBenchError(why))
        return entry

    def lacks(self, variant: str) -> bool:
        """Whether the base revision has no such variant (new in the candidate: nothing to gate it against)."""
        from qbench.measure.prepare import NOT_AT_REVISION

        try:
            manifest = self.manifest()
        except QBenchError:
            return False  # the build's failure is reported by the step that needs it
        return manifest.get("missing", {}).get(variant) == NOT_AT_REVISION

    # --------------------------------------------------------------- run
    def runner(self, variant: str, session_inputs: dict):
        """The twin loaded in its own worker (with the base's code), reading the session's test images."""
        if variant in self.failures:
            raise self.failures[variant]
        if variant not in self._runners:
            self.artifact(variant)  # a build that failed is the build's failure, not the load's
            try:
                runner = self._start(variant, session_inputs, self.label)
            except QBenchError as exc:
                raise self.fail(variant, "load", exc) from None
            runner.worker.on_crash = lambda crash: self.fail(variant, crash.step, crash)
            self._runners[variant] = runner
        return self._runners[variant]

    def predictions(self, variant: str, session_inputs: dict, dataset_fingerprint: str):
        """The twin's predicted label for every test image (the accuracy gate pairs the candidate's with them)."""
        import numpy as np

        if variant not in self._predictions:
            runner = self.runner(variant, session_inputs)
            if self.manifest()["dataset_fingerprint"] != dataset_fingerprint:
                raise self.fail(
                    variant,
                    "accuracy",
                    QBenchError("its test split differs from this run's (another dataset or split), so images cannot be paired"),
                )
            try:
                with runner.during("accuracy"):
                    scores = runner.evaluate()
            except QBenchError as exc:
                raise self.fail(variant, "accuracy", exc) from None
            self._predictions[variant] = np.argmax(scores, axis=1)
        return self._predictions[variant]

    def peak_memory(self, variant: str, session_inputs: dict, samples: int = 1) -> dict:
        """The twin's costs (:mod:`qbench.measure.costs`) in ``samples`` fresh workers with the base's code.

        Raises a non-fatal :class:`QBenchError` if the base's worker cannot measure them (a revision from
        before they existed); the memory gate then says so and skips, the twin's other checks stand.
        """
        from qbench.measure import costs

        if variant in self.failures:
            raise self.failures[variant]
        self.artifact(variant)  # a build that failed is the build's failure, not "measures no memory"
        measured = []
        for _ in range(max(1, samples)):
            try:
                runner = self._start(variant, session_inputs, f"{self.label}, memory", costs=True)
                try:
                    with runner.during("memory"):
                        measured.append(costs.measure(runner)[1])
                finally:
                    runner.close()
            except QBenchError as exc:
                raise QBenchError(f"{self.label} measures no memory ({one_line(exc, 160)})", fatal=False) from None
        return costs.summarize(measured)

    def _start(self, variant: str, session_inputs: dict, label: str, costs: bool = False):
        """A worker with the twin's artifact loaded by the base's code, reading the session's test images."""
        from qbench.measure.isolation import start_remote_runner

        entry = self.artifact(variant)
        inputs = dict(session_inputs, preprocess=self.manifest()["preprocess"])
        path, meta, threads = Path(entry["path"]), entry["meta"], self.settings.threads
        return start_remote_runner(
            variant, path, meta, threads, {}, inputs, code_root=self.code_root, label=f"{variant} ({label})", costs=costs
        )

    def timer(self, variant: str, session_inputs: dict):
        runner = self.runner(variant, session_inputs)

        def timed(calls: int):
            with runner.during("latency"):
                return runner.time(calls, "phases", 1.0)  # injections are the candidate's only

        return timed

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
