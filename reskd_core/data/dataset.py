"""The clip loader: a torch ``IterableDataset`` streaming Parquet shards a row group at a time.

The unit of reading is a row group. An epoch is one sequence of rows: the split's row groups in shard
order (evaluation) or shuffled with ``(seed, epoch)`` (training, the same order on every rank). Rank
``r`` takes a contiguous range of that sequence, and each DataLoader worker a contiguous part of the
rank's range, so a process reads only the row groups it needs. Training pads the sequence by wrapping
around to ``world_size x ceil(rows / world_size)`` rows, so every rank yields the same number of clips,
and shuffles within a buffer of rows; evaluation yields every video exactly once across ranks, in order.
Only the frames a clip samples are decoded.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from reskd_core.config import DataConfig
from reskd_core.data import storage
from reskd_core.data.preprocess import clip_indices, jpeg_frames
from reskd_core.data.shards import read_manifest, split_shards
from reskd_core.data.transforms import eval_transform, train_transform

log = logging.getLogger(__name__)

SHUFFLE_BUFFER = 64  # rows held for the in-buffer shuffle (on top of the row-group order shuffle)
OPEN_FILES = 4  # shard files a worker keeps open
COLUMNS = ["id", "label", "labels", "frames"]


class ClipDataset(IterableDataset):
    """Clips of one split of the shards at ``shards_uri`` (local folder or ``s3://`` prefix).

    Items: ``{"clip": float32 (T, 3, resolution, resolution), "label": int64 scalar or float32
    multi-hot (num_classes,), "id": str}``. Call :meth:`set_epoch` before each training epoch.
    """

    def __init__(
        self,
        shards_uri: str,
        split: str,
        data: DataConfig,
        resolution: int,
        train: bool,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if resolution < 8:
            raise ValueError(f"resolution must be at least 8 px, got {resolution}")
        manifest = read_manifest(shards_uri)
        self.uri, self.split, self.data = shards_uri, split, data
        self.resolution, self.train = resolution, train
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch = 0
        self.class_names: list[str] = list(manifest["class_names"])
        self.num_classes = len(self.class_names)
        self.multi_label = bool(data.multi_label or manifest.get("multi_label", False))
        if self.multi_label and not data.multi_label:
            log.info("shards at %s are multi-label: labels are multi-hot vectors", shards_uri)
        # (shard uri, row group, rows) in shard order; data.limit keeps the first rows only
        self.units: list[tuple[str, int, int]] = []
        left = data.limit if data.limit is not None else math.inf
        for entry in split_shards(manifest, split, shards_uri):
            for g, rows in enumerate(entry["row_groups"]):
                take = int(min(rows, left))
                if take > 0:
                    self.units.append((entry["uri"], g, take))
                left -= take
        self.total = sum(u[2] for u in self.units)
        if self.total == 0:
            raise ValueError(f"split {split!r} of {shards_uri} has no videos")
        if not train and self.total < world_size:
            log.warning(
                "split %s has %d videos for %d ranks: some ranks get none", split, self.total, world_size
            )

    def __len__(self) -> int:
        if self.train:
            return math.ceil(self.total / self.world_size)
        lo, hi = self._eval_range(self.rank, self.world_size, self.total)
        return hi - lo

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (training); the same epoch gives the same order on every rank."""
        self.epoch = epoch

    @staticmethod
    def _eval_range(part: int, parts: int, total: int) -> tuple[int, int]:
        return part * total // parts, (part + 1) * total // parts

    def _order(self) -> list[tuple[str, int, int]]:
        if not self.train:
            return self.units
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.units))
        return [self.units[i] for i in perm]

    def _my_range(self, worker: int, workers: int) -> tuple[int, int]:
        """This rank's and loader worker's ``[start, stop)`` in the epoch's (padded) row sequence."""
        if self.train:
            per_rank = math.ceil(self.total / self.world_size)
            lo = self.rank * per_rank
            a, b = self._eval_range(worker, workers, per_rank)
            return lo + a, lo + b
        lo, hi = self._eval_range(self.rank, self.world_size, self.total)
        a, b = self._eval_range(worker, workers, hi - lo)
        return lo + a, lo + b

    def _segments(self, start: int, stop: int) -> Iterator[tuple[str, int, int, int]]:
        """``(uri, row_group, first_row, end_row)`` covering sequence positions ``[start, stop)``.

        Positions past the end wrap around (training padding repeats rows from the start).
        """
        order = self._order()
        bounds = np.cumsum([0] + [u[2] for u in order])
        pos = start
        while pos < stop:
            p = pos % self.total
            i = int(np.searchsorted(bounds, p, side="right")) - 1
            uri, group, _ = order[i]
            first = p - int(bounds[i])
            n = min(int(bounds[i + 1]) - p, stop - pos)
            yield uri, group, first, first + n
            pos += n

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        start, stop = self._my_range(worker, workers)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, 1])
        files: OrderedDict[str, tuple[pq.ParquetFile, object]] = OrderedDict()
        rows = self._rows(start, stop, files)
        try:
            if not self.train:
                for row in rows:
                    yield self._item(row, rng)
                return
            buffer: list[dict] = []
            for row in rows:
                if len(buffer) < SHUFFLE_BUFFER:
                    buffer.append(row)
                    continue
                i = int(rng.integers(len(buffer)))
                buffer[i], row = row, buffer[i]
                yield self._item(row, rng)
            rng.shuffle(buffer)
            for row in buffer:
                yield self._item(row, rng)
        finally:
            for _, fh in files.values():
                fh.close()

    def _rows(self, start: int, stop: int, files: OrderedDict) -> Iterator[dict]:
        for uri, group, first, end in self._segments(start, stop):
            table = self._file(uri, files).read_row_group(group, columns=COLUMNS).slice(first, end - first)
            ids, labels, multi = table.column("id"), table.column("label"), table.column("labels")
            frames = table.column("frames")
            for r in range(table.num_rows):
                yield {
                    "id": ids[r].as_py(),
                    "label": labels[r].as_py(),
                    "labels": multi[r].as_py(),
                    "frames": frames[r].values,
                }

    def _file(self, uri: str, files: OrderedDict) -> pq.ParquetFile:
        if uri in files:
            files.move_to_end(uri)
            return files[uri][0]
        if len(files) >= OPEN_FILES:
            files.popitem(last=False)[1][1].close()
        fh = storage.open_input(uri)
        files[uri] = (pq.ParquetFile(fh), fh)
        return files[uri][0]

    def _item(self, row: dict, rng: np.random.Generator) -> dict:
        jpegs = row["frames"]
        d = self.data
        idx = clip_indices(len(jpegs), d.sampling, d.num_segments, d.frame_interval, self.train, rng)
        frames = jpeg_frames(jpegs, idx)
        if self.train:
            clip = train_transform(frames, self.resolution, self.data.scales, self.data.flip, rng)
        else:
            clip = eval_transform(frames, self.resolution)
        if self.multi_label:
            label = torch.zeros(self.num_classes, dtype=torch.float32)
            label[row["labels"]] = 1.0
        else:
            label = torch.tensor(row["label"], dtype=torch.int64)
        return {"clip": clip.contiguous(), "label": label, "id": row["id"]}
