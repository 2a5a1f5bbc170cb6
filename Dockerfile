# syntax=docker/dockerfile:1
# The Scorehouse image. docker-compose.yml runs every service of the stack from it (the Prefect server,
# the worker, the dashboard, the Evidently UI), so all of them run with the versions uv.lock pins; the
# server in particular needs sqlalchemy<2.1 and fastapi<0.151 (see pyproject.toml).
#
#   docker build -t scorehouse .
#
# Not built on our machines (no Docker engine there): see "Docker" in the README for what was checked.
FROM python:3.11-slim-bookworm

# libgomp1: the OpenMP runtime XGBoost links against; slim images lack it and `import xgboost` fails
# with "libgomp.so.1: cannot open shared object file".
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# The same uv as the one that wrote uv.lock (`uv --version`).
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PREFECT_HOME=/app/.run/prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1

WORKDIR /app

# Dependencies first, in a layer that changes only with uv.lock; the code after.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY . .
# The project is installed editable (uv's default): flows/deployed.py, the deployments' pull step, then
# finds the code in /app, and the default config is /app/scorehouse.toml.
RUN uv sync --frozen --no-dev \
    && useradd --system --uid 10001 --create-home scorehouse \
    && mkdir -p .run/prefect data/incoming data/feedback data/processed data/rejected data/warehouse \
        artifacts/models artifacts/reports/evidently \
    && chown -R scorehouse /app/.run /app/data /app/artifacts

USER scorehouse

# docker-compose.yml gives each service its command; alone, the image runs a worker.
CMD ["prefect", "worker", "start", "--pool", "scorehouse", "--type", "process"]
