"""The ``reskd`` command line (console script ``reskd = flows.cli:app``)."""

from flows.cli.main import app

__all__ = ["app"]
