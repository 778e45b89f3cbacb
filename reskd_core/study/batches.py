"""A seed's training batches, made once per epoch and replayed to every arm of that seed.

The loader is deterministic in ``(seed, epoch)``, so every arm of a seed sees exactly the same clips in
the same order: the comparisons are paired, and the clips are decoded once per epoch, not once per arm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator


class EpochBatches:
    """Training batches made once per epoch by ``make(epoch)`` and replayed to every arm of a seed.

    :func:`reskd_core.train.fit` calls :meth:`set_epoch` before each epoch, as it does on a loader.
    """

    def __init__(self, make: Callable[[int], list[dict]], steps: int) -> None:
        self.make, self.steps, self.epoch = make, steps, 0
        self.cache: dict[int, list[dict]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[dict]:
        if self.epoch not in self.cache:
            self.cache[self.epoch] = self.make(self.epoch)
        return iter(self.cache[self.epoch])


def loader_batches(dataset, batch_size: int) -> Callable[[int], list[dict]]:
    """``make(epoch)`` for :class:`EpochBatches`: one epoch of a ``ClipDataset`` as a list of batches."""

    import torch

    def make(epoch: int) -> list[dict]:
        dataset.set_epoch(epoch)
        return list(torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=0))

    return make
