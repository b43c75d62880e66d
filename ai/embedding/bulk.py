"""How `embed_documents` embeds in bulk: intra-op threads and batch size chosen from the cores
the process may use and from what it measures, so it is never slower than one text per call.

Candidates (ONNX Runtime, float32, the vectors of the serving path): 1 thread with batches of 1,
8 and 32, and every usable core with 32. The torch path's bfloat16 candidates (AMX CPUs only)
are gone with torch: ONNX Runtime's float32 kernels measured faster than torch's bulk path here.

There is no separate calibration pass (measured: slower than the naive loop on its own): the
first batches of the real work are the measurements. Each candidate runs two small probe
batches, the fastest per word piece takes the rest, and every 25 batches the runner-up gets one
more probe, since a shared machine's load changes. One text per call on one thread is the naive
loop's model cost and always a candidate: the choice is never slower than it beyond noise.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class BulkConfig:
    threads: int
    batch_size: int

    @property
    def label(self) -> str:
        return f"{self.threads} thread(s), batch {self.batch_size}"


def candidate_configs(*, cores: int | None = None) -> list[BulkConfig]:
    cores = cores or usable_cores()
    configs = [BulkConfig(1, 1), BulkConfig(1, 8), BulkConfig(1, 32)]
    if cores > 1:
        configs.append(BulkConfig(cores, 32))
    return configs


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
    ) -> None:
        self.candidates = list(candidates)
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
        self, texts: Sequence[str], embed_batch: Callable[[list[str], BulkConfig], Sequence[Sequence[float]]]
    ) -> list[list[float]]:
        """``embed_batch(texts, config)`` embeds one batch with ``config``'s threads."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        position = 0
        while position < len(order):
            config, size = self._pick()
            part = order[position : position + size]
            batch = [texts[i] for i in part]
            started = time.perf_counter()
            rows = embed_batch(batch, config)
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
