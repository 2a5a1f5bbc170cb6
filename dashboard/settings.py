"""What the dashboard reads and how fresh it is, from `SCOREHOUSE_...` variables and the project config.

The catalog is `$SCOREHOUSE_CATALOG` when set (any warehouse, no config needed), else the catalog
of the warehouse folder named by the config (`$SCOREHOUSE_CONFIG`, then the repo's scorehouse.toml).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.config import load_settings
from warehouse.catalog import CATALOG_FILE


class DashboardSettings(BaseSettings):
    """The dashboard's own settings; each has a `SCOREHOUSE_DASHBOARD_<NAME>` variable."""

    model_config = SettingsConfigDict(env_prefix="SCOREHOUSE_DASHBOARD_", frozen=True, populate_by_name=True)

    catalog: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("SCOREHOUSE_CATALOG", "catalog"),
        description="the DuckDB catalog to read; default: the one of the config's warehouse folder",
    )
    ttl_seconds: float = Field(
        default=10.0,
        gt=0,
        description="an answer is reused for at most this long; new batches appear within it without a restart",
    )
    page_rows: int = Field(default=50, ge=1, le=1000, description="rows per page of the predictions table")
    export_rows: int = Field(default=100_000, ge=1, description="most rows a CSV download holds")
    prefect_ui_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PREFECT_UI_URL", "prefect_ui_url"),
        description="the Prefect UI a person's browser opens, for links to the flow run that wrote a batch or report",
    )
    prefect_api_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PREFECT_API_URL", "prefect_api_url"),
        description="the Prefect API; without PREFECT_UI_URL its address minus `/api` is taken as the UI's",
    )

    def prefect_ui(self) -> str | None:
        """Where the Prefect UI is, when known: PREFECT_UI_URL, else PREFECT_API_URL minus its `/api`."""
        return prefect_ui_of(self.prefect_ui_url, self.prefect_api_url)

    def source(self) -> str:
        """What the pages read: the catalog file, or, for a warehouse on object storage (whose catalog only
        DuckDB's httpfs extension could read), the warehouse's location itself."""
        if self.catalog is None:
            config = load_settings()
            if config.warehouse_is_remote:
                return config.warehouse_location
        return str(self.catalog_path())

    def catalog_path(self) -> Path:
        """The catalog file. Raises pipeline.config.ConfigError when it comes from a config that is wrong."""
        if self.catalog is not None:
            return self.catalog.resolve()
        return load_settings().warehouse_dir / CATALOG_FILE


def prefect_ui_of(ui_url: str | None, api_url: str | None) -> str | None:
    """The Prefect UI's address from its own setting, or from the API's (a local server serves both, the API under
    `/api`, as Prefect itself infers it); None when neither is set."""
    if ui_url and ui_url.strip():
        return ui_url.strip().rstrip("/")
    api = (api_url or "").strip().rstrip("/")
    if not api:
        return None
    return api.removesuffix("/api")
