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

Batch 1 is the latency campaign's own calls (:mod:`qbench.measure.latency`): one
image a call through the variant's runner is what latency times, and
``Runner.batch_runner(1)`` is that same runner for every runtime, so it is
not timed a second time.  Its rate is each 0.1 s block's calls over their
seconds, the median over the campaign's blocks, and it reads 1 / the
median latency unless the calls have a tail (the rate is 1 / their mean).
Timed again in the throughput campaign, 20-40 s later, the same calls read
0.84-1.40x that (native, tflite-int8 and tflite-int8-qat on the default
model, five warm runs on an AVX-512 VNNI VM): the machine's phase, not the
batch path.  Batch 8 and 32 come from the throughput campaign that follows
the latency campaign.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

BATCH_1_ONLY = "batch 1 only"


def batch_name(variant: str, batch: int) -> str:
    return f"{variant} batch {batch}"


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
# blocks per (variant, batch) timer took 6 s for 27 timers when batch 1 had timers of its own (2026-12-01);
# four rounds of 50 ms stream windows 3-4 s.
# Batch 1 is read from the latency campaign (no timer of its own), and the streams' partners are the costs'
# fresh workers measured first (started once, not once for the streams and again for the costs).
ROUNDS = 5  # interleaved rounds of every (variant, batch) timer
BLOCK_SECONDS = 0.03  # one timed block of a batch size
STREAM_ROUNDS = 4  # rounds of every variant's streams, after a warm-up round
STREAM_SECONDS = 0.05  # one stream round's window


def measure(session, max_time: float = 2.0, min_rounds: int = 5) -> dict[str, dict]:
    """Every selected variant's throughput (``summarize``'s dict, or ``{"error": line}``), measured in one go.

    Batch 1 is read from the latest latency campaign (run first, with
    ``max_time`` and ``min_rounds``, if none has run; its index is batch 1's
    ``campaign``); the batch timers of
    all variants are interleaved, then the streams' rounds rotate over the
    variants; each variant's extra stream workers are the ones its costs
    measurement left running (``QBenchSession.stream_partners``), told to
    quit when the streams are done.
    """
    from qbench.core.errors import QBenchError
    from qbench.measure.isolation import request_together
    from qbench.measure.latency import interleaved_samples

    settings = session.settings
    batches, streams = settings.batches, settings.streams if settings.streams > 1 else 0
    runners, supported, errors, blocks = {}, {}, {}, {}
    campaign = session.latest_campaign  # a campaign the gate runs later to confirm a slowdown does not move batch 1
    for name in settings.variants:
        try:
            session.evaluation(name)
            runner = session.runner(name)
            with runner.during("throughput"):
                supported[name] = runner.batch_sizes(batches)
            if 1 in supported[name]:  # the latency's calls: the same runner (batch_runner(1)), the same call
                blocks[batch_name(name, 1)] = session.latency_blocks(name, max_time, min_rounds, campaign)
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
        for b in supported[name]:
            if b == 1:
                continue

            def timed(calls: int, runner=runner, b=b, stretch=stretch):
                with runner.during("throughput"):
                    return runner.time_batch(b, calls, stretch)

            timers[batch_name(name, b)] = timed
    if timers:
        sizes = ", ".join(str(b) for b in batches if b > 1)
        session.progress(f"throughput: batches {sizes} of {len(runners)} variants, interleaved (batch 1: the latency's calls)")
        got = interleaved_samples(timers, ROUNDS * BLOCK_SECONDS, ROUNDS, BLOCK_SECONDS, on_error=failed)
        blocks |= {key: [b[:, 0] for b in parts] for key, parts in got.items()}

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
            if isinstance(out[name]["batches"].get("1"), dict):
                out[name]["batches"]["1"]["campaign"] = campaign  # which latency campaign's calls batch 1 is
    return out
