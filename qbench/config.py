"""Run profiles and resolved settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qbench import backends
from qbench.core.errors import QBenchError
from qbench.model.datasets import DATASETS, PREPROCESSING


@dataclass(frozen=True)
class Profile:
    """How big a model to train and how strict to be.

    ``full`` is the real benchmark (about 2 minutes of training on 2 cores);
    ``smoke`` is a tiny model for CI that exercises every code path in well
    under two minutes but is not an accuracy reference.
    """

    name: str
    image_size: int
    alpha: float
    epochs: int
    batch_size: int
    learning_rate: float
    calibration_samples: int
    min_accuracy: float
    max_drop: float
    max_train: int | None = None
    max_test: int | None = None
    agreement_examples: int = 25
    # the calibration study's sweep (fractions of the train split), after the dl-in-iot quantization lab
    calibration_fractions: tuple[float, ...] = (0.01, 0.08, 0.3, 0.8)
    qat_epochs: int = 2  # quantization-aware fine-tuning of tflite-int8-qat
    # MobileNetV2 up to this block's residual add (then pooling and the classifier); None: all of it
    last_block: int | None = None
    # fresh workers each variant's load time, first call and memory are measured in: two give the memory gate its
    # spread; a third cost 7-8 s of warm command 1 (native's worker alone takes 4 s to start, load and evaluate)
    cost_samples: int = 2
    throughput_batches: tuple[int, ...] = (1, 8, 32)  # images a call (qbench.measure.throughput)
    throughput_streams: int = 2  # concurrent single-image streams (0: not measured)
    selective_ks: tuple[int, ...] = (0, 1, 2, 4, 8)  # operators kept in float, one model each (qbench.measure.selective)


PROFILES = {
    "full": Profile(
        name="full",
        image_size=64,
        alpha=0.35,
        epochs=15,
        batch_size=32,
        learning_rate=1e-3,
        calibration_samples=200,
        min_accuracy=0.90,
        max_drop=0.02,
    ),
    "smoke": Profile(
        name="smoke",
        image_size=32,
        alpha=0.35,
        epochs=8,
        batch_size=32,
        learning_rate=2e-3,
        calibration_samples=32,
        min_accuracy=0.50,
        max_drop=0.15,
        max_train=600,
        max_test=150,
        agreement_examples=8,
        calibration_fractions=(0.05, 0.5),
        qat_epochs=1,
        cost_samples=1,
        throughput_batches=(1, 8),
        throughput_streams=0,
        selective_ks=(0, 1, 2),
        last_block=5,  # 55 layers, not 155: a third of the training, conversion and compile time of CI
    ),
}


def parse_counts(text: str | None, option: str, least: int, what: str) -> tuple[int, ...] | None:
    """``"1,8,32"`` -> (1, 8, 32), sorted, each at least ``least``; ``none`` (or empty): (); ``None``: the profile's."""
    if text is None:
        return None
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise QBenchError(f"{option} takes comma-separated whole numbers or 'none', got {text!r}") from None
    if values and values[0] < least:
        raise QBenchError(f"{option} must be {least} or more {what}, got {values[0]}")
    return tuple(values)


def parse_batches(text: str | None) -> tuple[int, ...] | None:
    """``--qbench-throughput-batches``: images a call, 1 or more."""
    return parse_counts(text, "--qbench-throughput-batches", 1, "images a call")


def parse_fractions(text: str | None) -> tuple[float, ...] | None:
    """``"0.01,0.3"`` -> (0.01, 0.3); ``none`` (or empty) turns the calibration study off; ``None``: the profile's."""
    if text is None:
        return None
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise QBenchError(f"--qbench-calibration-fractions takes comma-separated numbers or 'none', got {text!r}") from None
    bad = [v for v in values if not 0.0 < v <= 1.0]
    if bad:
        raise QBenchError(f"--qbench-calibration-fractions must lie in (0, 1], got {', '.join(map(str, bad))}")
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class Settings:
    dataset: str = "digits"
    dataset_root: Path | None = None
    model_path: Path | None = None
    train: bool = False  # train from scratch instead of loading the committed reference (qbench.model.reference)
    profile: Profile = field(default_factory=lambda: PROFILES["full"])
    variants: tuple[str, ...] = field(default_factory=lambda: backends.names(default_only=True))
    build_dir: Path = Path("build")
    report_dir: Path | None = None
    seed: int = 0
    preprocess: str = "unit"
    test_fraction: float = 0.2
    calibration_samples: int | None = None
    min_accuracy: float | None = None
    max_drop: float | None = None
    threads: int = field(
        default_factory=lambda: len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    calibration_fractions: tuple[float, ...] | None = None
    cost_samples: int | None = None
    throughput_batches: tuple[int, ...] | None = None
    throughput_streams: int | None = None
    selective_ks: tuple[int, ...] | None = None
    selective_target: float = 0.0025
    options: dict = field(default_factory=dict, compare=False, repr=False)  # as given to make_settings

    @property
    def n_calibration(self) -> int:
        return self.calibration_samples if self.calibration_samples is not None else self.profile.calibration_samples

    @property
    def study_fractions(self) -> tuple[float, ...]:
        """The calibration study's fractions (empty: no study)."""
        return self.profile.calibration_fractions if self.calibration_fractions is None else self.calibration_fractions

    @property
    def n_cost_samples(self) -> int:
        """Fresh workers per variant for load time, first call and memory (0: not measured)."""
        return self.profile.cost_samples if self.cost_samples is None else self.cost_samples

    @property
    def batches(self) -> tuple[int, ...]:
        """Batch sizes throughput is measured at (empty: none)."""
        return self.profile.throughput_batches if self.throughput_batches is None else self.throughput_batches

    @property
    def streams(self) -> int:
        """Concurrent single-image streams throughput is measured with (0 or 1: not measured)."""
        return self.profile.throughput_streams if self.throughput_streams is None else self.throughput_streams

    @property
    def sweep_ks(self) -> tuple[int, ...]:
        """The selective sweep's K values (operators kept in float), one model each; empty: no sweep."""
        return self.profile.selective_ks if self.selective_ks is None else self.selective_ks

    @property
    def accuracy_floor(self) -> float:
        return self.min_accuracy if self.min_accuracy is not None else self.profile.min_accuracy

    @property
    def accuracy_max_drop(self) -> float:
        return self.max_drop if self.max_drop is not None else self.profile.max_drop

    @property
    def reports(self) -> Path:
        return self.report_dir if self.report_dir is not None else self.build_dir / "report"

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)


def parse_variants(text: str | None) -> tuple[str, ...]:
    """``"native,tflite-int8"`` -> validated tuple in registry order.

    ``None``/``all`` are the default variants; a group name (``peers``) stands
    for its members, so ``all,peers`` is the default set plus the peers.
    """
    if text is None or text.strip() in ("", "all"):
        return backends.names(default_only=True)
    groups = {"all": backends.names(default_only=True), **backends.groups()}
    wanted = []
    for token in (v.strip() for v in text.split(",") if v.strip()):
        wanted.extend(groups.get(token, (token,)))
    known = backends.names()
    unknown = [v for v in wanted if v not in known]
    if unknown:
        raise QBenchError(
            f"unknown variant(s) {', '.join(map(repr, unknown))}; choose from {', '.join(known)} or a group ({', '.join(groups)})"
        )
    return tuple(v for v in known if v in wanted)


_MODEL_MAGIC = {".keras": (b"PK\x03\x04", "a .keras zip archive"), ".h5": (b"\x89HDF\r\n\x1a\n", "an HDF5 file")}


def check_model_file(path: Path) -> Path:
    """Cheap checks before TensorFlow is loaded: exists, known suffix, right magic bytes."""
    path = Path(path).expanduser()
    if not path.exists():
        raise QBenchError(f"model file {path} does not exist")
    if not path.is_file():
        raise QBenchError(f"model path {path} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".hdf5":
        suffix = ".h5"
    if suffix not in _MODEL_MAGIC:
        raise QBenchError(f"model file {path} must be a Keras .keras or .h5 file")
    magic, what = _MODEL_MAGIC[suffix]
    with open(path, "rb") as fh:
        head = fh.read(len(magic))
    if head != magic:
        raise QBenchError(f"model file {path} is corrupt: it is not {what}")
    return path


# One table for both front ends: pytest's --qbench-<name> options and
# ``qbench prepare --<name>``.
OPTIONS: list[tuple[str, type, Any, str]] = [
    ("dataset", str, "digits", "dataset: digits (embedded default, scikit-learn) or pet (Oxford-IIIT Pet)"),
    ("dataset-root", str, None, "Oxford-IIIT Pet root (images/*.jpg, annotations/list.txt)"),
    ("model-path", str, None, "evaluate your own .keras/.h5 classifier instead of the reference model"),
    ("train", bool, False, "train the model from scratch with the profile's recipe instead of loading the committed reference"),
    ("preprocess", str, "unit", "input scaling for --qbench-model-path models: unit ([0,1]) or symmetric ([-1,1])"),
    ("profile", str, "full", f"model/threshold profile: {', '.join(PROFILES)} (default: full)"),
    ("variants", str, None, "comma-separated variant names or groups: all (the defaults), peers (OpenVINO, ONNX Runtime)"),
    ("build-dir", str, "build", "artifact cache directory (default: build)"),
    ("report-dir", str, None, "where summary.md/summary.json go (default: <build-dir>/report)"),
    ("seed", int, 0, "seed for the split, calibration sampling and training"),
    ("test-fraction", float, 0.2, "stratified test split fraction (default 0.2)"),
    ("calibration-samples", int, None, "int8 calibration samples, drawn from the train split"),
    ("min-accuracy", float, None, "absolute accuracy floor for every variant"),
    ("max-drop", float, None, "max accuracy drop of any variant vs native"),
    (
        "threads",
        int,
        None,
        "threads every runtime gets: LiteRT num_threads, TVM_NUM_THREADS/num-cores, TensorFlow intra/inter-op, "
        "ONNX Runtime intra-op, OpenVINO INFERENCE_NUM_THREADS (default: the usable cores)",
    ),
    (
        "calibration-fractions",
        str,
        None,
        "the calibration study's fractions of the train split, comma-separated, or none "
        "(default: 0.01,0.08,0.3,0.8; smoke profile 0.05,0.5); a one-class calibration and a balanced one of its size are added",
    ),
    (
        "cost-samples",
        int,
        None,
        "fresh worker processes each variant's load time, first call and peak memory are measured in "
        "(default 2: the variant's own worker and one more; smoke profile 1; 0: not measured)",
    ),
    (
        "throughput-batches",
        str,
        None,
        "batch sizes throughput is measured at, comma-separated, or none (default 1,8,32; smoke profile 1,8); "
        "a runtime compiled for one image a call (TVM) says batch 1 only",
    ),
    (
        "throughput-streams",
        int,
        None,
        "concurrent single-image streams, one worker process each, for the streams throughput "
        "(default 2; smoke profile 0; 0 or 1: not measured)",
    ),
    (
        "selective-k",
        str,
        None,
        "the selective sweep: how many of the worst-quantized operators to keep in float, one model each, "
        "comma-separated, or none (default 0,1,2,4,8; smoke profile 0,1,2); tflite-int8-selective is the chosen one",
    ),
    (
        "selective-target",
        float,
        0.0025,
        "the selective sweep chooses the smallest K whose accuracy is within this of native's (default 0.0025: 0.25 pp)",
    ),
]


def add_options(add: Callable[..., Any], prefix: str, options=None, defaults: bool = True) -> None:
    """Register ``options`` (default :data:`OPTIONS`) with an argparse-style ``add``
    (pytest's ``addoption`` or argparse's ``add_argument``); type ``bool`` is a flag,
    ``"append"`` a repeatable ``VARIANT=NUMBER``.  ``defaults=False`` leaves every default ``None``,
    so a value from an ini file can tell "not given" from "given" (:func:`ini_getter`)."""
    for name, type_, default, help_ in OPTIONS if options is None else options:
        if type_ is bool:
            kind = {"action": "store_true"}
        elif type_ == "append":
            kind = {"action": "append", "metavar": "VARIANT=NUMBER"}
        else:
            kind = {"type": type_}
        add(f"{prefix}{name}", default=default if defaults else None, help=help_, **kind)


def add_ini_keys(addini: Callable[..., Any], options) -> None:
    """Every option as an ini key too (``--qbench-latency-threshold`` -> ``qbench_latency_threshold``), read as text
    and converted by :func:`ini_getter` (pytest's own ini types would turn a typo into a traceback)."""
    for name, type_, _default, help_ in options:
        addini(f"qbench_{name.replace('-', '_')}", help_, type="linelist" if type_ == "append" else "string", default=None)


def ini_getter(options, from_cli: Callable[[str], Any], from_ini: Callable[[str], Any], inifile) -> Callable[[str], Any]:
    """An option getter: the command line if given there, else the ini file's ``qbench_*`` key, else the default.

    A value the ini file holds that is not of the option's type is one :class:`QBenchError` naming the file
    and the key; so is one that the option's own checks refuse (:func:`ini_message`).
    """
    table = {name: (type_, default) for name, type_, default, _ in options}
    where = str(inifile) if inifile else "the ini file"

    def get(name: str):
        type_, default = table[name]
        value = from_cli(name)
        if value is not None and value is not False and value != []:
            return value
        key = f"qbench_{name.replace('-', '_')}"
        raw = from_ini(key)
        if raw in (None, "", []):
            return value if type_ is bool and value else default
        if type_ == "append":
            return list(raw)
        text = str(raw).strip()
        if type_ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise QBenchError(f"{where}: {key} = {text!r} is not true or false")
        try:
            return type_(text)
        except ValueError:
            kind = {int: "a whole number", float: "a number"}.get(type_, type_.__name__)
            raise QBenchError(f"{where}: {key} = {text!r} is not {kind}") from None

    return get


def ini_message(message: str, options, from_cli: Callable[[str], Any], from_ini: Callable[[str], Any], inifile) -> str:
    """A check's sentence about ``--qbench-<name>`` said of the ini key instead, when the value came from the ini file."""
    for name, *_ in options:
        flag, key = f"--qbench-{name}", f"qbench_{name.replace('-', '_')}"
        if flag in message and from_cli(name) in (None, False, []) and from_ini(key) not in (None, "", []):
            return message.replace(flag, f"{inifile}: {key}")
    return message


def settings_from_options(get: Callable[[str], Any]) -> Settings:
    """Build settings from an option getter keyed by the names in :data:`OPTIONS`."""
    return make_settings(**{name.replace("-", "_"): get(name) for name, *_ in OPTIONS})


def settings_to_argv(settings: Settings, **overrides) -> list[str]:
    """The ``--name value`` arguments that rebuild ``settings`` (for a child process); ``overrides`` replace
    options by their Python names (``build_dir=...``; ``None`` drops one)."""
    options = {**settings.options, **overrides}
    argv = []
    for name, _type, _default, _help in OPTIONS:
        value = options.get(name.replace("-", "_"))
        if value is True:
            argv.append(f"--{name}")
        elif value is not None and value is not False:
            argv += [f"--{name}", repr(value) if isinstance(value, float) else str(value)]
    return argv


def make_settings(
    dataset: str = "digits",
    dataset_root: str | None = None,
    model_path: str | None = None,
    train: bool = False,
    profile: str = "full",
    variants: str | None = None,
    build_dir: str = "build",
    report_dir: str | None = None,
    seed: int = 0,
    preprocess: str = "unit",
    test_fraction: float = 0.2,
    calibration_samples: int | None = None,
    min_accuracy: float | None = None,
    max_drop: float | None = None,
    threads: int | None = None,
    calibration_fractions: str | None = None,
    cost_samples: int | None = None,
    throughput_batches: str | None = None,
    throughput_streams: int | None = None,
    selective_k: str | None = None,
    selective_target: float = 0.0025,
) -> Settings:
    """Validate user options; every problem becomes one :class:`QBenchError` sentence."""
    if dataset not in DATASETS:
        raise QBenchError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if profile not in PROFILES:
        raise QBenchError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if preprocess not in PREPROCESSING:
        raise QBenchError(f"unknown preprocessing {preprocess!r}; choose one of {', '.join(PREPROCESSING)}")
    root = None
    if dataset == "pet":
        if not dataset_root:
            raise QBenchError(
                "--qbench-dataset pet needs --qbench-dataset-root (directory with images/ and annotations/list.txt)"
            )
        root = Path(dataset_root).expanduser()
        if not root.is_dir():
            raise QBenchError(f"dataset root {root} does not exist or is not a directory")
    elif dataset_root:
        raise QBenchError(f"--qbench-dataset-root is only used with --qbench-dataset pet, not {dataset!r}")
    model = check_model_file(Path(model_path)) if model_path else None
    if model is not None and train:
        raise QBenchError("--qbench-train and --qbench-model-path exclude each other (a given model is not trained)")
    if model is None and preprocess != "unit":
        raise QBenchError("--qbench-preprocess only applies to --qbench-model-path models (qbench's own model takes [0,1] input)")
    if not 0.0 < test_fraction < 1.0:
        raise QBenchError(f"--qbench-test-fraction must be between 0 and 1, got {test_fraction}")
    if calibration_samples is not None and calibration_samples < 1:
        raise QBenchError(f"--qbench-calibration-samples must be positive, got {calibration_samples}")
    for name, value in (("--qbench-min-accuracy", min_accuracy), ("--qbench-max-drop", max_drop)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise QBenchError(f"{name} must be between 0 and 1, got {value}")
    if threads is not None and threads < 1:
        raise QBenchError(f"--qbench-threads must be at least 1, got {threads}")
    fractions = parse_fractions(calibration_fractions)
    if cost_samples is not None and cost_samples < 0:
        raise QBenchError(f"--qbench-cost-samples must be 0 or more, got {cost_samples}")
    batches = parse_batches(throughput_batches)
    if throughput_streams is not None and throughput_streams < 0:
        raise QBenchError(f"--qbench-throughput-streams must be 0 or more, got {throughput_streams}")
    ks = parse_counts(selective_k, "--qbench-selective-k", 0, "operators")
    if not 0.0 <= selective_target < 1.0:
        raise QBenchError(f"--qbench-selective-target is an accuracy difference between 0 and 1, got {selective_target}")
    options = dict(
        dataset=dataset,
        dataset_root=dataset_root,
        model_path=model_path,
        train=bool(train),
        profile=profile,
        variants=variants,
        build_dir=build_dir,
        report_dir=report_dir,
        seed=seed,
        preprocess=preprocess,
        test_fraction=test_fraction,
        calibration_samples=calibration_samples,
        min_accuracy=min_accuracy,
        max_drop=max_drop,
        **({"threads": int(threads)} if threads is not None else {}),
        calibration_fractions=calibration_fractions,
        cost_samples=cost_samples,
        throughput_batches=throughput_batches,
        throughput_streams=throughput_streams,
        selective_k=selective_k,
        selective_target=selective_target,
    )
    return Settings(
        options=options,
        dataset=dataset,
        dataset_root=root,
        model_path=model,
        train=bool(train),
        profile=PROFILES[profile],
        variants=parse_variants(variants),
        build_dir=Path(build_dir),
        report_dir=Path(report_dir) if report_dir else None,
        seed=seed,
        preprocess=preprocess,
        test_fraction=test_fraction,
        calibration_samples=calibration_samples,
        min_accuracy=min_accuracy,
        max_drop=max_drop,
        **({"threads": int(threads)} if threads is not None else {}),
        calibration_fractions=fractions,
        cost_samples=cost_samples,
        throughput_batches=batches,
        throughput_streams=throughput_streams,
        selective_ks=ks,
        selective_target=float(selective_target),
    )
