"""The data layer: annotation readers, decord extraction to Parquet shards, the clip loader, demo data.

Modules: ``annotations`` (four formats -> samples), ``storage`` (local paths and ``s3://`` URIs),
``decode`` and ``pool`` (decoding in worker processes), ``shards`` (the Parquet schema, manifest,
errors), ``extract`` (the extraction run), ``sampling`` and ``transforms`` (frame indices and pixels),
``dataset`` (:class:`~reskd_core.data.dataset.ClipDataset`), ``demo`` (the generated demo dataset).
Nothing is imported here, so ``import reskd_core.data`` stays cheap.
"""
