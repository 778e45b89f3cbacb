import pytest


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """`reskd` (run by CliRunner) calls logging.basicConfig on the runner's stream, closed afterwards."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
