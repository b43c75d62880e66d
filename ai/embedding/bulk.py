"""How `embed_documents` embeds in bulk: threads, batch size and precision chosen from what the
CPU offers and from what it measures, so it is never slower than one text per model call.

* CPUs with AMX tiles: bfloat16 on every core, batches of 64 (measured 2.5x there, cosine to the
  float32 vectors >= 0.99998), with single-thread fallbacks in case the box is busy.
* Otherwise float32 only (1 thread with batches of 1, 8 and 32; every core with 32): the stored
  vectors stay exactly those of the serving path. bfloat16 without AMX (AVX512_BF16, e.g. AMD
  Zen 4) measured 2.2x less CPU per call but no faster end to end, and on near-duplicate chunks
  it moved search results (recall@10 0.97 against float32 in bench_embed); emulated bfloat16
  is slower still.

There is no separate calibration pass (measured: slower than the naive loop on its own): the
first batches of the real work are the measurements. Each candidate runs two small probe
batches, the fastest per word piece takes the rest, and every 25 batches the runner-up gets one
more probe, since a shared machine's load changes. One text per call on one thread is the naive
loop's model cost and always a candidate: the choice is never slower than it beyond noise.

Built on the research helper's prototype (scratch-embed/bulk_policy.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_amx() -> bool:
    """AMX tiles with bfloat16, as the kernel reports them (torch's own probe is private API)."""
    return {"amx_tile", "amx_bf16"} <= cpu_flags()


def cpu_has_native_bfloat16() -> bool:
    """bfloat16 dot products in hardware (reported by the benchmark; only AMX makes them a candidate)."""
    return cpu_has_amx() or bool({"avx512_bf16", "avx_vnni_bf16"} & cpu_flags())


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class BulkConfig:
    threads: int
    batch_size: int
    bfloat16: bool = False

    @property
    def label(self) -> str:
        return f"{self.threads} thread(s), batch {self.batch_size}, {'bfloat16' if self.bfloat16 else 'float32'}"


def candidate_configs(*, cores: int | None = None, allow_bfloat16: bool = True) -> list[BulkConfig]:
    cores = cores or usable_cores()
    if allow_bfloat16 and cpu_has_amx():
        return [BulkConfig(cores, 64, bfloat16=True), BulkConfig(1, 32, bfloat16=True), BulkConfig(1, 32)]
    configs = [BulkConfig(1, 1), BulkConfig(1, 8), BulkConfig(1, 32)]
    if cores > 1:
        configs.append(BulkConfig(cores, 32))
    return configs


@contextlib.contextmanager
def config_applied(config: BulkConfig) -> Iterator[None]:
    """torch's thread count and autocast precision for the model calls inside."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bfloat16):
            yield
    finally:
        torch.set_num_threads(previous)


class BulkPlan:
    """Length-sorted batches with the candidate that measures fastest per word piece here.
    Keep one per job: what it learnt carries over from one ``embed_documents`` call to the next."""

    def __init__(
        self,
        candidates: Sequence[BulkConfig],
        *,
        count_tokens: Callable[[str], int] = lambda text: max(1, len(text) // 4),
        probe_size: int = 8,
        probes: int = 2,
        recheck_every: int = 25,
        apply: Callable[[BulkConfig], contextlib.AbstractContextManager[None]] | None = None,
    ) -> None:
        self.candidates = list(candidates)
        self.apply = apply or config_applied
        self.count_tokens = count_tokens
        self.probe_size = probe_size
        self.probes = probes
        self.recheck_every = recheck_every
        self.cost: dict[BulkConfig, float] = {}  # seconds per word piece
        self.runs: dict[BulkConfig, int] = {}
        self.batches = 0

    @property
    def best(self) -> BulkConfig:
        return min(self.cost, key=self.cost.__getitem__)

    def embed_documents(
        self, texts: Sequence[str], embed_batch: Callable[[list[str]], Sequence[Sequence[float]]]
    ) -> list[list[float]]:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        position = 0
        while position < len(order):
            config, size = self._pick()
            part = order[position : position + size]
            batch = [texts[i] for i in part]
            started = time.perf_counter()
            with self.apply(config):
                rows = embed_batch(batch)
            per_piece = (time.perf_counter() - started) / sum(self.count_tokens(text) for text in batch)
            runs = self.runs.get(config, 0)
            if runs < self.probes:  # first measurements: keep the best (warm-up, page faults)
                self.cost[config] = min(per_piece, self.cost.get(config, per_piece))
            else:
                self.cost[config] = 0.7 * self.cost[config] + 0.3 * per_piece
            self.runs[config] = runs + 1
            self.batches += 1
            for index, row in zip(part, rows, strict=True):
                out[index] = [float(value) for value in row]
            position += len(part)
        logger.info("bulk embedding uses %s", self.best.label if self.cost else "nothing yet")
        return out

    def _pick(self) -> tuple[BulkConfig, int]:
        for config in self.candidates:
            if self.runs.get(config, 0) < self.probes:
                return config, min(config.batch_size, self.probe_size)
        ranked = sorted(self.cost, key=self.cost.__getitem__)
        if len(ranked) > 1 and self.recheck_every and self.batches % self.recheck_every == 0:
            return ranked[1], min(ranked[1].batch_size, self.probe_size)
        return ranked[0], ranked[0].batch_size
