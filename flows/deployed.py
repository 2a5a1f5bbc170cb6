"""What changes when a flow runs from a deployment (`prefect.yaml`, started by a worker) instead of locally.

Three things, kept here so that the flows stay the same code in both cases:

- **Finding the code.** A process worker starts every flow run in an empty temporary folder.
  `project_directory` is the deployments' pull step: it moves the run into the checkout that holds this
  file, wherever that is (a clone on a laptop, `/app` in the image), so `prefect.yaml` names no path.
- **Retraining through the server.** When `monitor` finds retraining due in a deployed run, it hands the
  work to the `retrain` deployment (`start_retrain`): the retrain gets its own run, logs and artifacts in
  the UI, its own concurrency limit, and the scoring cycle is not held up by a training. Locally (the demo,
  the CLI, the flow tests) nothing is deployed and the caller retrains inline, as before.
- **What the operator reads.** Run names that say what a run did once it is known (`add_to_run_name`), and
  links from a run's artifacts to the Evidently UI and the dashboard (`report_url`, `dashboard_url`). The
  addresses are those a person's browser uses, so they come from the environment of the stack (the
  Makefile, docker-compose.yml), with the local defaults of `make up`.

Nothing here imports more than Prefect: the pull step runs before any flow module is loaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# `<flow name>/<deployment name>` as prefect.yaml registers them; every deployment is named "scorehouse".
DEPLOYMENT_NAME = "scorehouse"
RETRAIN_DEPLOYMENT = f"retrain/{DEPLOYMENT_NAME}"

DASHBOARD_URL_ENV = "SCOREHOUSE_DASHBOARD_URL"
REPORTS_URL_ENV = "SCOREHOUSE_REPORTS_URL"
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8501"  # `make up`: streamlit --server.port 8501
DEFAULT_REPORTS_URL = "http://127.0.0.1:8000"  # `make reports-ui`: evidently ui --port 8000

logger = logging.getLogger(__name__)


def project_directory() -> dict[str, str]:
    """Pull step of every deployment: run in the checkout this file belongs to.

    Returns `directory` like Prefect's own `set_working_directory` step; the worker then resolves the
    entrypoints (`flows/cycle.py:scoring_cycle`) from there.
    """
    os.chdir(PROJECT_ROOT)
    return {"directory": str(PROJECT_ROOT)}


def deployment_id() -> str | None:
    """The deployment this flow run, or the flow run it is nested in, was started from; None when local.

    A subflow (`monitor` inside `scoring_cycle`) has no deployment of its own: Prefect's runtime context
    gives the deployment of the run it is nested in.
    """
    from prefect.runtime import deployment

    value = deployment.id
    return str(value) if value else None


def is_deployed() -> bool:
    return deployment_id() is not None


def start_retrain(config: str | None, trigger: str, key: str) -> FlowRun:
    """Create a run of the `retrain` deployment and return at once (the worker picks it up).

    `key` (the monitoring report id) makes the request idempotent: the same report never starts two
    retrains, even if the run that asks is retried. The new run is linked to the calling flow run in the UI.
    Raises RuntimeError with what to do when the deployment is not registered on this server.
    """
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(
            RETRAIN_DEPLOYMENT,
            parameters={"config": config, "trigger": trigger},
            timeout=0,
            idempotency_key=f"retrain-{key}",
            tags=["triggered"],
        )
    except ObjectNotFound:
        raise RuntimeError(
            f"retraining is due ({trigger}) but the deployment {RETRAIN_DEPLOYMENT!r} is not registered on this "
            "Prefect server: run `make deploy`, then start it with "
            f"`prefect deployment run {RETRAIN_DEPLOYMENT}` (or run `scorehouse retrain` by hand)"
        ) from None
    return cast("FlowRun", run)  # called from a sync flow, so not the coroutine of the async variant


def add_to_run_name(outcome: str) -> None:
    """Append what the run did to its name once it is known: `score 2026-11-21 14:05` becomes
    `score 2026-11-21 14:05 v3`.

    A name is for people: if the API cannot be reached the run goes on under its first name.
    """
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    name = f"{context.flow_run.name} {outcome}"
    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_name(context.flow_run.id, name)
        context.flow_run.name = name
    except Exception as error:  # cosmetic: never fail a run over its name
        logger.warning("could not rename flow run %s to %r: %s", context.flow_run.id, name, error)


def dashboard_url() -> str:
    """Where a person opens the dashboard (set SCOREHOUSE_DASHBOARD_URL when it is not the local default)."""
    return os.environ.get(DASHBOARD_URL_ENV, DEFAULT_DASHBOARD_URL).rstrip("/")


def reports_url() -> str:
    """Where a person opens the Evidently UI (SCOREHOUSE_REPORTS_URL)."""
    return os.environ.get(REPORTS_URL_ENV, DEFAULT_REPORTS_URL).rstrip("/")


def report_url(project_id: str, snapshot_id: str) -> str:
    """The Evidently UI page of one snapshot in a project of the workspace."""
    return f"{reports_url()}/projects/{project_id}/reports/{snapshot_id}"
