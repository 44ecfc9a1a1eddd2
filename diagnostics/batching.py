"""Opportunistic batching of concurrent inference requests for one model.

No timer and no waiting window: a request that finds the model idle runs at
once (batch of one, no added latency). Requests that arrive while the model is
busy queue up, and the next run takes all of them (up to ``max_batch``) in one
LiteRT invoke. Under load, batches grow by themselves; at low load nothing is
delayed. Inference runs in the given executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

Outputs = tuple[np.ndarray, np.ndarray]
PredictFunction = Callable[[np.ndarray], Outputs]


class MicroBatcher:
    """Batches ``submit`` calls on one event loop into calls of ``predict``."""

    def __init__(self, predict: PredictFunction, executor: Executor, max_batch: int) -> None:
        self._predict = predict
        self._executor = executor
        self._max_batch = max(1, max_batch)
        self._pending: list[tuple[np.ndarray, asyncio.Future[tuple[float, np.ndarray]]]] = []
        self._running = False
        self._drain_task: asyncio.Task[None] | None = None  # held so the running drain is not garbage-collected
        self.batch_sizes: list[int] = []  # observed batch sizes, for tests and benchmarks

    async def submit(self, tensor: np.ndarray) -> tuple[float, np.ndarray]:
        """One [S, S, 3] tensor -> (probability, features [h, w, C])."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[float, np.ndarray]] = loop.create_future()
        self._pending.append((tensor, future))
        if not self._running:
            self._running = True
            self._drain_task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._pending[:self._max_batch]
                del self._pending[:self._max_batch]
                batch = [(tensor, future) for tensor, future in batch if not future.cancelled()]
                if not batch:
                    continue
                self.batch_sizes.append(len(batch))
                stacked = np.stack([tensor for tensor, _ in batch])
                try:
                    probabilities, features = await loop.run_in_executor(self._executor, self._predict, stacked)
                except Exception as error:  # handed to every waiting request, not swallowed
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for position, (_, future) in enumerate(batch):
                    if not future.done():
                        future.set_result((float(probabilities[position]), features[position]))
        finally:
            self._running = False
