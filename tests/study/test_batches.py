"""The per-epoch batch replay (reskd_core.study.batches)."""

from reskd_core.study.batches import EpochBatches


def test_epoch_batches_are_made_once_per_epoch_and_replayed():
    made = []

    def make(epoch):
        made.append(epoch)
        return [{"epoch": epoch, "i": i} for i in range(3)]

    batches = EpochBatches(make, steps=3)
    assert len(batches) == 3
    first = list(batches)
    assert list(batches) == first and made == [0]
    batches.set_epoch(1)
    second = list(batches)
    assert [b["epoch"] for b in second] == [1, 1, 1]
    batches.set_epoch(0)
    assert list(batches)[0] is first[0]  # the same objects: every arm sees the same clips
    assert made == [0, 1]
