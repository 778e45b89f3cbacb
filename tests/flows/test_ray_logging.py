"""The loggers that flows/ray_logging.py quietens in Ray workers are the ones Ray Train logs with."""

from flows.ray_logging import PG_CLEANER, report_logger_name


def test_the_quietened_loggers_are_ray_trains_own():
    from ray.train.v2._internal.execution import context
    from ray.train.v2._internal.execution.controller import placement_group_cleaner

    assert context.logger.name == report_logger_name()
    assert placement_group_cleaner.logger.name == PG_CLEANER
