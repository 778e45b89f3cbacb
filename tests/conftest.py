"""Shared fixtures live in tests/fixtures/*.py, one file per real service."""

import pytest
import torch

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.stack",
    "tests.fixtures.mlflow",
    "tests.fixtures.ray_cluster",
    "tests.fixtures.demo_shards",
    "tests.fixtures.trained_student",
]


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread in the test process: on a shared 2-core machine, where servers and Ray
    workers run beside it, two spinning OpenMP threads make it many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """`reskd` (run by CliRunner) calls logging.basicConfig on the runner's stream, closed afterwards."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
