"""Fair promotion: the challenger becomes ``champion`` only if it beats the champion on one fixed test set.

The test set is the dataset's ``pipeline.test_set`` (named in ``dataset.yaml``), else the one pinned by its
first registration (:func:`flows.tracking.catalog.pinned_test_set`), else, for the first version, this
run's report split (then pinned). Both models' checkpoints are evaluated on it in this run; a tie, a loss
or a champion that cannot be evaluated keeps the champion. The verdict goes to the parent run (metrics
``promotion_*``, tag ``reskd.promotion``, ``promotion.md`` and ``promotion.json``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from flows.tracking import catalog
from flows.tracking.client import client_for
from flows.tracking.registry import champion, model_name
from reskd_core.config import Config
from reskd_core.report import ResultRow

log = logging.getLogger(__name__)

PROMOTION_TAG = "reskd.promotion"  # promoted | kept


@dataclass(frozen=True)
class FixedTestSet:
    shards: str
    split: str
    origin: str  # "dataset.yaml", "pinned" or "this run (first version, now pinned)"


@dataclass
class Contender:
    label: str
    accuracy: float | None  # None: could not be evaluated
    gflops: float
    checkpoint: str


@dataclass
class Verdict:
    model: str
    test_set: FixedTestSet
    challenger: Contender
    champion: Contender | None  # None: no champion yet
    promote: bool
    reason: str

    def markdown(self) -> str:
        ts = self.test_set
        rows = [("challenger", self.challenger)] + ([("champion", self.champion)] if self.champion else [])
        table = "\n".join(
            f"| {role} | {c.label} | {'-' if c.accuracy is None else f'{c.accuracy:.2f}'} | {c.gflops:.4f} |"
            for role, c in rows
        )
        return (
            f"# reskd promotion: {self.model}\n\n"
            f"Test set: `{ts.shards}` split `{ts.split}` ({ts.origin}); both evaluated in this run.\n\n"
            f"| role | model | accuracy (%) | GFLOPs/video |\n|---|---|---:|---:|\n{table}\n\n"
            f"**{'promoted' if self.promote else 'champion kept'}**: {self.reason}\n"
        )


def fixed_test_set(cfg: Config, shards_uri: str) -> FixedTestSet:
    """The test set this run's challenger is compared on (see the module docstring)."""
    from reskd_core.data.shards import read_manifest
    from reskd_core.evaluate import report_split

    if cfg.pipeline.test_set:
        splits = read_manifest(cfg.pipeline.test_set).get("splits", {})
        return FixedTestSet(cfg.pipeline.test_set, report_split(cfg, splits), "dataset.yaml")
    pinned = catalog.pinned_test_set(cfg.tracking.uri, model_name(cfg.pipeline.dataset))
    if pinned:
        return FixedTestSet(*pinned, "pinned by the first version")
    split = report_split(cfg, read_manifest(shards_uri).get("splits", {}))
    return FixedTestSet(shards_uri, split, "this run's, the first version: now pinned")


def _accuracy(checkpoint: str, test_set: FixedTestSet, cfg: Config) -> float:
    from reskd_core.evaluate import evaluate_checkpoint, primary_metric

    metrics = evaluate_checkpoint(checkpoint, test_set.shards, test_set.split, cfg)
    return primary_metric(metrics, cfg.data.multi_label)


def decide(cfg: Config, row: ResultRow, test_set: FixedTestSet, shards_uri: str | None = None) -> Verdict:
    """Evaluate the challenger ``row`` and the current champion on ``test_set`` and decide. ``row``'s own
    accuracy is used when it was measured on that very set (``shards_uri``, its split: the first version)."""
    name = model_name(cfg.pipeline.dataset)
    measured = (test_set.shards, test_set.split) == (shards_uri, row.split)
    accuracy = row.accuracy if measured else _accuracy(row.checkpoint or "", test_set, cfg)
    challenger = Contender(row.label, accuracy, row.gflops, row.checkpoint or "")
    current = champion(client_for(cfg.tracking.uri), name)
    if current is None:
        return Verdict(name, test_set, challenger, None, True, "no champion yet")
    tags = current.tags or {}
    checkpoint = tags.get("reskd.checkpoint", "")
    label = f"v{current.version} {tags.get('reskd.kd', '?')}@{tags.get('reskd.resolution', '?')}"
    held = Contender(label, None, float(tags.get("reskd.gflops", "nan")), checkpoint)
    try:
        held.accuracy = _accuracy(checkpoint, test_set, cfg)
    except Exception as e:  # a champion that cannot be measured here is not displaced blindly
        log.warning("champion %s of %s could not be evaluated: %s", label, name, e)
        reason = f"champion {label} could not be evaluated on the test set ({type(e).__name__}: {e})"
        return Verdict(name, test_set, challenger, held, False, reason)
    promote = challenger.accuracy is not None and challenger.accuracy > held.accuracy
    verb = "beats" if promote else "ties" if challenger.accuracy == held.accuracy else "loses to"
    reason = f"{challenger.accuracy:.2f} {verb} champion {label} {held.accuracy:.2f} on {test_set.split}"
    return Verdict(name, test_set, challenger, held, promote, reason)


def log_verdict(parent_run_id: str | None, tracking_uri: str, verdict: Verdict) -> None:
    """The verdict on the parent run: metrics, tag, ``promotion.md`` and ``promotion.json``."""
    if parent_run_id is None:
        return
    client = client_for(tracking_uri)
    metrics = {
        "promotion_challenger_accuracy": verdict.challenger.accuracy,
        "promotion_challenger_gflops": verdict.challenger.gflops,
    }
    if verdict.champion is not None:
        metrics |= {
            "promotion_champion_accuracy": verdict.champion.accuracy,
            "promotion_champion_gflops": verdict.champion.gflops,
        }
    for key, value in metrics.items():
        if value is not None:
            client.log_metric(parent_run_id, key, value)
    client.set_tag(parent_run_id, PROMOTION_TAG, "promoted" if verdict.promote else "kept")
    client.set_tag(
        parent_run_id, "reskd.promotion_test_set", f"{verdict.test_set.shards}#{verdict.test_set.split}"
    )
    client.log_text(parent_run_id, verdict.markdown(), "promotion.md")
    client.log_text(parent_run_id, json.dumps(asdict(verdict), indent=1), "promotion.json")
