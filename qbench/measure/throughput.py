"""Images per second: batches of several images a call, and concurrent single-image streams.

MLPerf Inference reports offline and multi-stream throughput beside
single-stream latency; a server batching requests or handling several
clients at once is limited by these, not by one warm call.  Two kinds:

* **batch B** (default 1, 8 and 32): one call on B test images, end to end
  (float in, float scores out, as latency is timed), in the variant's own
  worker through :meth:`qbench.backends.Runner.batch_runner` (LiteRT
  ``resize_tensor_input``, TensorFlow's free batch dimension, ONNX
  Runtime's, OpenVINO reshaped and compiled again); a runtime compiled for
  one image a call (TVM) says "batch 1 only".  The (variant, batch) timers
  run in interleaved rounds (:func:`qbench.measure.latency.interleaved_samples`),
  so a slow phase of the machine hits them alike.  A block's rate is B x its
  calls / its seconds; the figure is the median over blocks, with their range.
* **N streams**: N workers of the variant (its own and N-1 more) each call
  single images back to back over the same window, every other worker
  paused; the rate is all their calls / the window.  Rounds rotate over the
  variants; the first is a discarded warm-up.

Batch 1 through the variant's own worker makes the same calls as its
latency; the latency call and a batch-1 call are timed in turn, call by
call, in the same rounds (``latency_call``, ``batch_1_vs_latency_call``;
batch 1's blocks are that timer's batch-1 calls), and the two must agree
(``benchmarks/test_throughput.py``):
a rate read in another campaign can differ for reasons of the runtime's
own (LiteRT's calls on the smoke model switched between about 37 and 57 us
from one campaign to the next on this VM).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

BATCH_1_ONLY = "batch 1 only"


def batch_name(variant: str, batch: int) -> str:
    return f"{variant} batch {batch}"


def reference_name(variant: str) -> str:
    """The variant's single-image latency call, timed among the batch timers (the batch-1 check's yardstick)."""
    return f"{variant} batch latency"


def block_rates(blocks, batch: int) -> list[float]:
    """Images per second of each block of per-call seconds (end-to-end column)."""
    return [batch * len(b) / float(np.sum(b)) for b in blocks if len(b) and float(np.sum(b)) > 0]


def rate_figures(rates: list[float]) -> dict:
    """Median images per second over the blocks (or stream rounds), their range and how many."""
    return {"img_s": float(np.median(rates)), "range": [float(min(rates)), float(max(rates))], "blocks": len(rates)}


def stream_rounds(
    groups: dict[str, Callable[[float, float], list]],
    rounds: int,
    seconds: float,
    on_error: Callable[[str, Exception], None],
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Images per second of each variant's concurrent streams, one figure per round (after a warm-up round).

    ``groups[variant](start_at, seconds)`` runs the variant's streams together from ``start_at``
    (``time.monotonic``) and returns each stream's ``(calls, seconds)``.
    """
    live = dict(groups)
    rates: dict[str, list[float]] = {name: [] for name in groups}
    names = list(groups)
    for r in range(rounds + 1):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            if name not in live:
                continue
            try:
                answers = live[name](time.monotonic() + 0.01, seconds)  # a common start, after the requests are out
            except Exception as exc:
                live.pop(name)
                on_error(name, exc)
                continue
            if r > 0:  # round 0 wakes every stream's threads and caches
                rates[name].append(sum(calls for calls, _ in answers) / max(took for _, took in answers))
        if progress is not None and r == rounds // 2:
            progress(f"throughput: stream round {r + 1}/{rounds + 1} of {len(live)} variants")
    return {name: got for name, got in rates.items() if got and name in live}


def summarize(batches: tuple[int, ...], batch_blocks: dict[int, list], streams: int, stream_rates: list[float] | None) -> dict:
    """A variant's throughput: each batch size's figures (or "batch 1 only"), its streams', and the best of them."""
    out: dict = {"batches": {}}
    best = None
    for b in batches:
        blocks = batch_blocks.get(b)
        if blocks is None:
            out["batches"][str(b)] = BATCH_1_ONLY
            continue
        fig = rate_figures(block_rates(blocks, b))
        out["batches"][str(b)] = fig
        if best is None or fig["img_s"] > best[1]:
            best = (f"batch {b}", fig["img_s"])
    if streams and stream_rates:
        out["streams"] = {"count": streams, **rate_figures(stream_rates)}
        if best is None or out["streams"]["img_s"] > best[1]:
            best = (f"{streams} streams", out["streams"]["img_s"])
    if best is not None:
        out["best"], out["best_img_s"] = best
    return out


# What throughput adds to warm command 1 is a budget (at most 20 s, for every variant): five rounds of 30 ms
# blocks per (variant, batch) timer took 6 s for 27 timers; four rounds of 50 ms stream windows 3-4 s.
# Batch 1 is read from the batch-1 check's calls (one timer, not two), and the streams' partners are the
# costs' fresh workers measured first (started once, not once for the streams and again for the costs).
def batch_1_agreement(rounds) -> dict:
    """Batch 1 against the latency call, from calls made in turn: per round, the latency call's median
    seconds over batch 1's (their rates' ratio); the median over rounds, the range, how many.

    Medians, because a tail of a few slow calls (tflite-dynamic's 2 threads
    on 2 cores) falls on one path or the other by chance and would move a
    ratio of sums; what the check asks is whether both paths make the same
    call."""
    ratios = [float(np.median(r[:, 0]) / np.median(r[:, 1])) for r in rounds if len(r)]
    return {"median": float(np.median(ratios)), "range": [min(ratios), max(ratios)], "rounds": len(ratios)}


ROUNDS = 5  # interleaved rounds of every (variant, batch) timer
BLOCK_SECONDS = 0.03  # one timed block of a batch size
STREAM_ROUNDS = 4  # rounds of every variant's streams, after a warm-up round
STREAM_SECONDS = 0.05  # one stream round's window


def measure(session) -> dict[str, dict]:
    """Every selected variant's throughput (``summarize``'s dict, or ``{"error": line}``), measured in one go.

    The batch timers of all variants are interleaved, then the streams' rounds
    rotate over the variants; each variant's extra stream workers are the ones
    its costs measurement left running (``QBenchSession.stream_partners``),
    closed when the streams are done.
    """
    from qbench.core.errors import QBenchError
    from qbench.measure.isolation import request_together
    from qbench.measure.latency import interleaved_samples

    settings = session.settings
    batches, streams = settings.batches, settings.streams if settings.streams > 1 else 0
    runners, supported, errors = {}, {}, {}
    for name in settings.variants:
        try:
            session.evaluation(name)
            runner = session.runner(name)
            with runner.during("throughput"):
                supported[name] = runner.batch_sizes(batches)
        except QBenchError as exc:
            if exc.fatal:
                raise
            errors.setdefault(name, str(exc))
            continue
        runners[name] = runner

    def failed(name: str, exc: Exception) -> None:
        errors.setdefault(name.split(" batch ")[0], str(exc))

    timers = {}
    for name, runner in runners.items():
        stretch = session.injections.slowdown.get(name, 1.0)
        if 1 in supported[name]:
            # the batch-1 check's yardstick: the latency call and a batch-1 call in turn, call by call, in the same
            # worker. Compared block against adjacent block instead, LiteRT's rounds on the smoke model read
            # 0.73-2.6x apart (its speed modes, 9,200 vs 25,500 img/s), and tflite-dynamic's 0.07-0.55x on another
            # VM (its 2-thread tail): both failed a CI run.

            def reference(calls: int, runner=runner, stretch=stretch):
                with runner.during("throughput"):
                    return runner.time_batch_1_against_call(calls, stretch)

            timers[reference_name(name)] = reference
        for b in supported[name]:
            if b == 1:  # batch 1's blocks are the reference timer's batch-1 column: the same calls, not timed twice
                continue

            def timed(calls: int, runner=runner, b=b, stretch=stretch):
                with runner.during("throughput"):
                    return runner.time_batch(b, calls, stretch)

            timers[batch_name(name, b)] = timed
    blocks, got = {}, {}
    if timers:
        session.progress(f"throughput: batches {', '.join(map(str, batches))} of {len(runners)} variants, interleaved")
        got = interleaved_samples(timers, ROUNDS * BLOCK_SECONDS, ROUNDS, BLOCK_SECONDS, on_error=failed)
        blocks = {key: [b[:, 0] for b in parts] for key, parts in got.items()}
        for name in runners:
            if 1 in supported[name] and reference_name(name) in got:
                blocks[batch_name(name, 1)] = [b[:, 1] for b in got[reference_name(name)]]

    stream_rates: dict[str, list[float]] = {}
    if streams:
        for name in runners:  # its cost samples' fresh workers, kept paused, are the streams' partners: start them once
            try:
                session.costs(name)
            except QBenchError as exc:  # the costs test reports it; the streams start their own partners
                if exc.fatal:
                    raise
        groups = {}
        for name, runner in runners.items():
            if name in errors:
                continue
            try:
                workers = [runner.worker] + [p.worker for p in session.stream_partners(name, streams - 1)]
            except QBenchError as exc:
                if exc.fatal:
                    raise
                errors.setdefault(name, f"{streams} streams: {exc}")
                continue
            stretch = session.injections.slowdown.get(name, 1.0)
            groups[name] = lambda start_at, seconds, workers=workers, stretch=stretch: request_together(
                workers, "throughput", "stream", start_at=start_at, seconds=seconds, stretch=stretch
            )
        session.progress(f"throughput: {streams} concurrent streams of {len(groups)} variants, in rotating rounds")
        try:
            stream_rates = stream_rounds(groups, STREAM_ROUNDS, STREAM_SECONDS, failed, session.progress)
        finally:
            session.close_stream_partners()

    out = {}
    for name in settings.variants:
        if name in errors:
            out[name] = {"error": errors[name]}
        elif name in runners:
            per_batch = {b: blocks.get(batch_name(name, b)) for b in supported[name]}
            out[name] = summarize(batches, per_batch, streams, stream_rates.get(name))
            ref = got.get(reference_name(name))  # (calls, 2) blocks: the latency call, a batch-1 call
            if ref:
                out[name]["latency_call"] = rate_figures(block_rates([b[:, 0] for b in ref], 1))
                out[name]["batch_1_vs_latency_call"] = batch_1_agreement(ref)
    return out
