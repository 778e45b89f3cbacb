"""The local production stack (``reskd stack up|down|status``): Prefect, MLflow, S3 and Ray as real
processes on 127.0.0.1, wired by the same environment variables as the Compose and Kubernetes setups."""

from reskd_stack.core import ServiceStatus, Stack
from reskd_stack.services import SERVICES
from reskd_stack.settings import StackSettings, client_env, env_file_text

__all__ = ["SERVICES", "ServiceStatus", "Stack", "StackSettings", "client_env", "env_file_text"]
