"""A tiny learnable clip dataset in the loader's item format, for training tests without shards."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, IterableDataset


class ColourClips(IterableDataset):
    """Class ``k`` brightens colour channel ``k % 3`` (sign by ``k // 3``) under Gaussian noise.

    Deterministic per ``(seed, epoch)``; ``multi_label`` adds a random second label to each clip.
    """

    def __init__(
        self,
        n: int = 32,
        classes: int = 3,
        frames: int = 2,
        res: int = 32,
        seed: int = 0,
        multi_label: bool = False,
    ) -> None:
        super().__init__()
        self.n, self.classes, self.frames, self.res, self.seed = n, classes, frames, res, seed
        self.multi_label = multi_label
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        for i in range(self.n):
            k = i % self.classes
            clip = torch.randn(self.frames, 3, self.res, self.res, generator=g) * 0.5
            clip[:, k % 3] += 1.0 if k < 3 else -1.0
            if self.multi_label:
                label = torch.zeros(self.classes)
                label[k] = 1.0
                label[int(torch.randint(self.classes, (1,), generator=g))] = 1.0
            else:
                label = torch.tensor(k)
            yield {"clip": clip, "label": label, "id": f"v{i}"}


def loader(ds: ColourClips, batch_size: int = 8) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size)
