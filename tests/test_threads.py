"""``--qbench-threads`` reaches every runtime: each one's worker starts more OS threads when given more.

Thread pools are what the option sizes (LiteRT's ``num_threads``, TVM's
``TVM_NUM_THREADS`` and ``num-cores``, TensorFlow's intra/inter-op pools, the
peers' own settings), so each variant is loaded in a fresh worker with 1 and
then 3 threads, timed for a few calls (pools start lazily), and the
process's thread count read from ``/proc/self/task``.  A runtime that
ignored the option would show the same count both times.
"""

from __future__ import annotations

import sys

import pytest

from qbench import backends
from qbench.config import make_settings

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc/self/task")

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from qbench.session import QBenchSession
    from tests.test_variants import tiny_model

    workdir = tmp_path_factory.mktemp("threads")
    model = workdir / "tiny.keras"
    tiny_model().save(model)
    settings = make_settings(
        model_path=str(model), build_dir=str(workdir / "build"), calibration_samples=20, variants="all,peers"
    )
    # builds in this process (TensorFlow is loaded already); each measurement starts a worker of its own
    s = QBenchSession(settings, isolate=False)
    yield s
    s.close()


def _measured(session, variant: str, threads: int, what=lambda runner: runner.os_threads()):
    from qbench.measure.isolation import start_remote_runner

    art = session.artifact(variant)
    runner = start_remote_runner(variant, art.path, art.meta, threads, {}, session.worker_inputs())
    try:
        runner.time(20)
        return what(runner)
    finally:
        runner.close()


def _timed_variants():
    for name in backends.names():
        if name.startswith("tflite-") and name not in ("tflite-fp32", "tflite-int8"):
            continue  # the same LiteRT interpreter and options as those two
        if backends.get(name).default or name.startswith(("openvino", "onnxruntime")):
            yield name


@pytest.mark.parametrize("variant", list(_timed_variants()))
def test_each_runtime_sizes_its_pool_from_the_threads_option(session, variant):
    reason = backends.get(variant).unavailable()
    if reason:
        pytest.skip(f"{variant}: {reason}")
    one, three = _measured(session, variant, 1), _measured(session, variant, 3)
    assert three > one, f"{variant}: {one} OS threads with --qbench-threads 1 and {three} with 3: the option did not reach it"


def test_tvm_pool_is_sized_by_the_threads_option(session):
    def pool(runner):
        return runner._call("pool_threads")

    assert (_measured(session, "tvm-avx2-int8", 1, pool), _measured(session, "tvm-avx2-int8", 2, pool)) == (1, 2)


def test_the_threads_option_reaches_the_workers(tmp_path_factory, session):
    """Through the option, not a runner argument: a session made with ``threads=1`` starts a leaner LiteRT."""
    from qbench.session import QBenchSession

    counts = {}
    for threads in (1, 3):
        s = QBenchSession(session.settings.with_(threads=threads), isolate=True)
        try:
            runner = s.runner("tflite-fp32")
            runner.time(20)
            counts[threads] = runner.os_threads()
        finally:
            s.close()
    assert counts[3] > counts[1], counts
    assert make_settings(threads=1).threads == 1
