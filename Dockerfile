# syntax=docker/dockerfile:1
# lenrisk API image: the locked environment (uv.lock) built in one stage, run as a non-root user in another.
#
#   docker build -t lenrisk:0.1.0 .
#   docker run -p 8000:8000 \
#     -e LENRISK_API_KEYS='{"clinic-a": "<sha256 of the key>"}' \
#     -e MLFLOW_TRACKING_URI=http://mlflow:5000 lenrisk:0.1.0          # models from a tracking server
#   docker run ... -v "$PWD/mlruns:/app/mlruns" lenrisk:0.1.0           # or from a mounted mlruns/ (SQLite),
#                                                                       # trained at /app/mlruns (docs/deploy.md)
#
# `lenrisk serve` refuses to listen on 0.0.0.0 without API keys: configure them via the environment
# (LENRISK_API_KEYS, LENRISK_ADMIN_KEYS: name -> SHA-256 digest, from `lenrisk apikey NAME`). Production
# set-up (PostgreSQL-backed registry and audit store, TLS proxy, probes): docs/deploy.md.

FROM python:3.12-slim-bookworm AS builder

# uv: the version scripts/bootstrap uses; the image's Python 3.12 (never a downloaded one, and not the
# exact patch release .python-version names for pyenv); compiled bytecode; the venv at /app/.venv.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON=/usr/local/bin/python3.12 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install --no-cache-dir uv==0.13.8

WORKDIR /app

# Dependencies first (their layer survives source edits), then the project itself.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

COPY README.md ./
COPY features ./features
COPY training ./training
COPY service ./service
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev


FROM python:3.12-slim-bookworm AS runtime

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LENRISK_MLRUNS_DIR=/app/mlruns \
    MLFLOW_DISABLE_TELEMETRY=true \
    MLFLOW_HTTP_REQUEST_MAX_RETRIES=2 \
    MLFLOW_HTTP_REQUEST_TIMEOUT=10

# A system user without a login shell. The code and the venv stay root-owned (read-only to the service);
# only the models directory, mounted or an anonymous volume, is the service's.
RUN groupadd --system --gid 10001 lenrisk \
    && useradd --system --no-log-init --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin lenrisk \
    && mkdir -p /app/mlruns \
    && chown lenrisk:lenrisk /app/mlruns

WORKDIR /app
COPY --from=builder /app /app

# Numeric, so that runtimes (Kubernetes runAsNonRoot) can verify it is not root.
USER 10001:10001

# Models: MLFLOW_TRACKING_URI (a tracking server or database), else the embedded SQLite store and its
# artifacts under /app/mlruns, where the API also keeps its default SQLite audit trail
# (production: LENRISK_AUDIT_URL=postgresql+psycopg2://...).
VOLUME ["/app/mlruns"]
EXPOSE 8000

# Liveness only: /healthz never depends on the registry. Readiness (models loaded) is /readyz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["lenrisk", "serve", "--host", "0.0.0.0", "--port", "8000"]
