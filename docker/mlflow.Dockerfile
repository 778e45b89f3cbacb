# syntax=docker/dockerfile:1.7
# The MLflow tracking server: PostgreSQL backend store (psycopg2) and proxied S3 artifacts (boto3).
# MLflow's own image has neither driver. Everything is set through MLflow's environment variables:
#   MLFLOW_BACKEND_STORE_URI (a secret: it may hold the password), MLFLOW_ARTIFACTS_DESTINATION,
#   MLFLOW_SERVER_ALLOWED_HOSTS, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...
#   docker build -f docker/mlflow.Dockerfile -t reskd-mlflow:3.17.2 .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PATH=/opt/venv/bin:$PATH
COPY docker/constraints.txt /tmp/constraints.txt
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir -c /tmp/constraints.txt \
        mlflow==3.17.2 psycopg2-binary==2.9.13 boto3==1.43.117

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin mlflow
COPY --from=builder /opt/venv /opt/venv
USER 10001
WORKDIR /home/mlflow
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
