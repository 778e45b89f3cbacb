# syntax=docker/dockerfile:1.7
# The reskd pipeline image, CUDA: the CPU image's twin (docker/pipeline.Dockerfile) with PyPI's CUDA
# build of torch, whose wheels bundle the CUDA runtime and cuDNN; the host's NVIDIA container toolkit
# provides the driver. For GPU Ray workers and GPU flow runs.
#   docker build -f docker/pipeline-cuda.Dockerfile -t reskd:cuda .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
# torch first, the CUDA build from PyPI, pinned: nothing later may pull another build.
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir \
        torch==2.14.1 torchvision==0.29.1
WORKDIR /app
COPY docker/constraints.txt pyproject.toml README.md ./
# The dependencies alone, in a layer that changes only with pyproject.toml or the constraints.
RUN mkdir reskd_core reskd_stack flows \
    && touch reskd_core/__init__.py reskd_stack/__init__.py flows/__init__.py \
    && pip install --no-cache-dir -c constraints.txt ".[pipeline,export]" \
    && pip uninstall --yes reskd \
    && rm -rf reskd_core reskd_stack flows build ./*.egg-info
COPY reskd_core reskd_core
COPY reskd_stack reskd_stack
COPY flows flows
COPY configs configs
# Editable: the recipes in /app/configs stay where reskd_core looks for them.
RUN pip install --no-cache-dir --no-deps -e .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    PREFECT_HOME=/home/reskd/.prefect \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# KubeRay's default readiness/liveness probes run `wget ... | grep success` inside Ray containers.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends wget=1.21.3-1+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin reskd
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /home/reskd/work
RUN chown reskd:reskd /home/reskd/work
USER 10001
CMD ["reskd", "--help"]
