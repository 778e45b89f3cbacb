"""The ablation study's pure parts (nothing here trains in a flow or talks to MLflow).

- :mod:`~reskd_core.study.arms`: one arm (a model trained one way), its config, network and shapes;
- :mod:`~reskd_core.study.plan`: the arms to train and the comparisons (tables) they answer;
- :mod:`~reskd_core.study.batches`: a seed's training batches, made once per epoch and replayed;
- :mod:`~reskd_core.study.stats`: the records read back, mean +- std over seeds, paired differences;
- :mod:`~reskd_core.study.page`, :mod:`~reskd_core.study.findings`, :mod:`~reskd_core.study.efficiency`:
  the Markdown of docs/results.md; :mod:`~reskd_core.study.plots`: its PNGs.
"""
