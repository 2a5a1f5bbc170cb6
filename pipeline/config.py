"""The dataset contract and every setting, read from one TOML file and `SCOREHOUSE_...` variables.

Nothing else in the code names a column, a rule or a threshold: it all comes from here.
A wrong file fails at start with the field's path and what is wrong with it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "scorehouse.toml"
CONFIG_ENV = "SCOREHOUSE_CONFIG"


class ConfigError(ValueError):
    """The config file or an override is wrong; the message names the field."""


class _Strict(BaseModel):
    # NaN and infinity are refused everywhere: a rule bound of NaN compares false with every value, so the
    # rule would silently never fire.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Feature(_Strict):
    """One input column and the rules a value must pass to be stored."""

    name: str = Field(min_length=1)
    kind: Literal["numeric", "categorical"]
    nullable: bool = Field(True, description="whether a missing value is allowed")
    min: float | None = Field(None, description="smallest allowed value (numeric only)")
    max: float | None = Field(None, description="largest allowed value (numeric only)")
    allowed: list[str] | None = Field(None, description="allowed values (categorical only)")
    label: str | None = Field(None, description="the feature in words, for reason codes (default: its name)")
    unit: str | None = Field(None, description="the unit its values are in, for reason codes, e.g. %")

    @model_validator(mode="after")
    def _rules_fit_kind(self) -> Feature:
        if self.kind == "categorical" and (self.min is not None or self.max is not None):
            raise ValueError(f"feature {self.name!r} is categorical: 'min'/'max' apply to numeric features only")
        if self.kind == "numeric" and self.allowed is not None:
            raise ValueError(f"feature {self.name!r} is numeric: 'allowed' applies to categorical features only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min {self.min} is above max {self.max}")
        if self.allowed is not None and not self.allowed:
            raise ValueError(f"feature {self.name!r}: 'allowed' is empty; omit it to allow any value")
        return self


class Dataset(_Strict):
    """Which column is which in the incoming data."""

    name: str | None = Field(
        None, min_length=1, description="what people call the data; names runs and the Evidently project"
    )
    id_column: str = Field(min_length=1, description="unique id of a record")
    event_time_column: str | None = Field(None, description="optional time the record describes")
    target_column: str = Field(min_length=1, description="true outcome, in reference and feedback data")
    classes: tuple[str, str] = Field(description="the two values of the target: negative first, then positive")
    features: list[Feature] = Field(min_length=1)

    @property
    def positive_class(self) -> str:
        return self.classes[1]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @model_validator(mode="after")
    def _names_are_distinct(self) -> Dataset:
        names = self.feature_names
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"features listed twice: {duplicated}")
        special = {self.id_column, self.target_column} | ({self.event_time_column} if self.event_time_column else set())
        clash = sorted(special & set(names))
        if clash:
            raise ValueError(f"{clash} is the id, target or event-time column and cannot also be a feature")
        if self.classes[0] == self.classes[1]:
            raise ValueError("classes must be two different values")
        return self


class Training(_Strict):
    """How the first model is fitted and evaluated."""

    reference_path: Path = Field(description="file holding the labelled reference data (CSV or Parquet)")
    reference_fraction: float = Field(
        1.0, gt=0, le=1, description="leading share of the reference file used as history (the rest arrives later)"
    )
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="share of the reference set kept for evaluation")
    seed: int = 42


class Model(_Strict):
    """The embedding and the classifier."""

    embedding_size: int = Field(8, ge=1, description="PCA components of the embedding")
    input: Literal["embedding", "features", "both"] = Field(
        "embedding", description="what the classifier sees: the embedding, the preprocessed features, or both"
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="score at or above which the label is positive")
    params: dict[str, float | int | str | bool] = Field(default_factory=dict, description="XGBoost parameters")
    compare_inputs: bool = Field(
        False, description="also fit the classifier on the other inputs at `train`, to record what each costs"
    )


class Scoring(_Strict):
    chunk_rows: int = Field(100_000, ge=1, description="rows embedded and scored at once; bounds memory")


class Compute(_Strict):
    """Where `score`'s units, and the validation of large files by `ingest`, run: in the flow's process, or on a
    Dask cluster."""

    engine: Literal["local", "dask"] = Field(
        "local", description="local: units run one after another in the flow; dask: on a Dask cluster"
    )
    address: str = Field(
        "", description="the Dask scheduler, e.g. tcp://scheduler:8786; empty: a LocalCluster started for the run"
    )
    workers: int = Field(2, ge=1, description="worker processes of the LocalCluster (when address is empty)")
    unit_attempts: int = Field(
        3, ge=1, description="times a unit is submitted before the run fails (a failed or lost unit is retried)"
    )
    ingest_min_rows: int = Field(
        1_000_000,
        ge=1,
        description="with dask, Parquet files of at least this many rows are validated on the cluster; "
        "smaller files and CSV files in the flow (starting a LocalCluster alone takes seconds)",
    )

    @field_validator("address")
    @classmethod
    def _scheduler_address(cls, value: str) -> str:
        if value and "://" not in value:
            raise ValueError(f"{value!r} is not a scheduler address; write it as tcp://HOST:8786, or leave it empty")
        return value


class Explain(_Strict):
    """Per-prediction explanations, written with each score (see pipeline/explain.py)."""

    enabled: bool = Field(True, description="store each prediction's contributions and reason codes with its score")
    top_k: int = Field(
        4, ge=0, le=50, description="reason codes kept per prediction (the largest that raised the score)"
    )
    approximate: bool = Field(
        False, description="Saabas path contributions instead of exact TreeSHAP (only faster for deep trees)"
    )


class Monitoring(_Strict):
    """What the monitor compares, and when it raises an alert."""

    window_days: int = Field(3, ge=1, description="monitor the records that arrived today and the N-1 days before")
    max_rows: int = Field(
        50_000, ge=100, description="drift is measured on a seeded sample of at most this many rows per side"
    )
    seed: int = 0
    column_p_value: float = Field(0.05, gt=0, lt=1, description="a column drifts when its test's p-value is below this")
    drift_share_threshold: float = Field(
        0.1, gt=0, le=1, description="alert when more than this share of the feature (or embedding) columns drift"
    )
    quality_metric: Literal["roc_auc", "f1", "precision", "recall", "balanced_accuracy"] = "roc_auc"
    max_quality_drop: float = Field(
        0.02,
        ge=0,
        description="materiality: alert only when the drop is significant and at least this below the hold-out value",
    )
    min_labels: int = Field(100, ge=1, description="labels needed before realised quality can raise an alert")
    min_class_labels: int = Field(
        100, ge=1, description="labels of the rarer class (window and hold-out) needed before a quality alert"
    )
    window_by: Literal["arrival", "event_time"] = Field(
        "arrival", description="what puts a record in a window: when it arrived, or the time it describes"
    )
    column_distance: float = Field(
        0.1, gt=0, description="materiality: a column drifts only when its distance is at least this (and significant)"
    )
    quality_alpha: float = Field(0.05, gt=0, lt=1, description="level of the one-sided quality test")
    detectable_drop: float = Field(
        0.05, gt=0, description="a window that cannot detect a drop this large says 'too few labels to tell'"
    )
    cbpe_max_gap: float = Field(
        0.02, gt=0, description="flag the CBPE estimate as unreliable when |estimated - realised| ROC AUC exceeds this"
    )
    webhook_url: str | None = Field(None, description="optional URL an alert is POSTed to as JSON")


class Retrain(_Strict):
    """When a challenger is trained, how, and what it must do to be promoted."""

    every_new_labels: int = Field(1000, ge=1, description="retrain after this many new labels since the last training")
    on_drift: bool = Field(True, description="retrain when the monitor's drift alert fires")
    on_quality_drop: bool = Field(True, description="retrain when the monitor's quality alert fires")
    strategy: Literal["scratch", "warm_start"] = Field(
        "scratch", description="fit a new model, or continue the champion's booster (XGBoost warm start)"
    )
    warm_start_rounds: int = Field(100, ge=1, description="trees added to the champion's booster (warm_start)")
    primary_metric: Literal["roc_auc", "f1", "precision", "recall", "balanced_accuracy"] = "roc_auc"
    min_improvement: float = Field(
        0.005, ge=0, description="the challenger must beat the champion by at least this on the primary metric"
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="level of the paired promotion test and of its guard")
    guard_metric: Literal["roc_auc", "f1", "precision", "recall", "balanced_accuracy"] | None = Field(
        "recall", description="never promote when this metric gets significantly worse"
    )
    guard_tolerance: float = Field(0.0, ge=0, description="how much worse the guard metric may get before it blocks")
    cooldown_hours: float = Field(24.0, ge=0, description="no alert-triggered retrain within this long of the last one")
    production_holdout_fraction: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="latest share of the labelled production rows kept out of training for the comparison",
    )


class Maintenance(_Strict):
    """What `maintain` keeps: the warehouse's old file versions and the run-time leftovers."""

    retention_days: float = Field(
        7,
        ge=0,
        description="files replaced by compaction or erasure are vacuumed after this long; it bounds time "
        "travel (`catalog --as-of`) and must outlast any reader holding an old catalog",
    )
    batch_ids_days: float = Field(
        30,
        ge=1,
        description="a batch published again within this long (a file dropped twice, a re-run) is recognised by "
        "its id in the table's log and not written twice; after it, records still store an id once",
    )
    target_file_mb: int = Field(128, gt=0, description="compaction merges small files into files of about this size")
    reports_days: float = Field(
        90, ge=0, description="monitoring HTML reports and snapshots older than this are removed"
    )
    workspace_reports: int = Field(
        12,
        ge=1,
        description="the Evidently workspace keeps the snapshots of this many latest reports: every monitor run "
        "opens it, which parses each (about 0.25 s a report with a 20,000-row drift sample)",
    )
    handled_files_days: float = Field(
        30, ge=0, description="files in the processed and rejected folders older than this are removed"
    )


class Drop(_Strict):
    """How files are taken from the drop folders (see the README's "Your own data")."""

    settle_seconds: float = Field(
        5.0,
        ge=0,
        le=86_400,
        description="a file is taken only once its size and modification time have not changed for this long",
    )


class Paths(_Strict):
    """Folders; relative paths resolve from the config file's folder."""

    incoming: Path = Path("data/incoming")
    feedback: Path = Path("data/feedback")
    processed_files: Path = Path("data/processed")
    rejected_files: Path = Path("data/rejected")
    # A folder, or object storage: `s3://bucket/prefix` (credentials and endpoint from the AWS_* variables).
    warehouse: str = "data/warehouse"
    # The DuckDB catalog of views for people; default: `warehouse.duckdb` in the warehouse folder (or, for a
    # warehouse on object storage, in `data/`: DuckDB writes only local files).
    catalog: Path | None = None
    models: Path = Path("artifacts/models")
    reports: Path = Path("artifacts/reports")


class Settings(BaseSettings):
    """Everything Scorehouse needs to know about a dataset and where things live."""

    model_config = SettingsConfigDict(
        env_prefix="SCOREHOUSE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )

    dataset: Dataset
    training: Training
    model: Model = Model()
    scoring: Scoring = Scoring()
    compute: Compute = Compute()
    explain: Explain = Explain()
    monitoring: Monitoring = Monitoring()
    retrain: Retrain = Retrain()
    maintenance: Maintenance = Maintenance()
    paths: Paths = Paths()
    drop: Drop = Drop()
    base_dir: Path = Field(REPO_ROOT, description="folder relative paths resolve from (the config file's folder)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    @field_validator("base_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()

    @model_validator(mode="after")
    def _folders_are_safe(self) -> Settings:
        problem = folder_problem(self.folders())
        if problem:
            raise ValueError(problem)
        return self

    def folders(self) -> dict[str, Path]:
        """The folders Scorehouse writes into, moves files out of, or empties (the demo), by config key."""
        local_warehouse = {} if self.warehouse_is_remote else {"paths.warehouse": self.warehouse_dir}
        return {
            "paths.incoming": self.incoming_dir,
            "paths.feedback": self.feedback_dir,
            "paths.processed_files": self.processed_dir,
            "paths.rejected_files": self.rejected_dir,
            **local_warehouse,
            "paths.models": self.models_dir,
            "paths.reports": self.reports_dir,
        }

    def resolve(self, path: Path) -> Path:
        """An absolute path: configured paths are relative to `base_dir`."""
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def incoming_dir(self) -> Path:
        return self.resolve(self.paths.incoming)

    @property
    def feedback_dir(self) -> Path:
        return self.resolve(self.paths.feedback)

    @property
    def processed_dir(self) -> Path:
        return self.resolve(self.paths.processed_files)

    @property
    def rejected_dir(self) -> Path:
        return self.resolve(self.paths.rejected_files)

    @property
    def warehouse_location(self) -> str:
        """The warehouse root: an object-storage URI as given, or an absolute folder."""
        if "://" in self.paths.warehouse:
            return self.paths.warehouse.rstrip("/")
        return str(self.resolve(Path(self.paths.warehouse)))

    @property
    def warehouse_is_remote(self) -> bool:
        return "://" in self.paths.warehouse

    @property
    def warehouse_dir(self) -> Path:
        """The local folder of the warehouse (for one on object storage: where its catalog is kept)."""
        if self.warehouse_is_remote:
            return self.catalog_path.parent
        return self.resolve(Path(self.paths.warehouse))

    @property
    def catalog_path(self) -> Path:
        if self.paths.catalog is not None:
            return self.resolve(self.paths.catalog)
        if self.warehouse_is_remote:
            return self.resolve(Path("data/warehouse.duckdb"))
        return self.resolve(Path(self.paths.warehouse)) / "warehouse.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.resolve(self.paths.models)

    @property
    def reports_dir(self) -> Path:
        return self.resolve(self.paths.reports)

    @property
    def reference_path(self) -> Path:
        return self.resolve(self.training.reference_path)

    @property
    def dataset_name(self) -> str:
        """`dataset.name`, or the reference file's name without its suffix: what runs and projects are named after."""
        return self.dataset.name or self.reference_path.stem


# Folders of the operating system (and their children, for the ones listed in SYSTEM_TREES): an ingest moves
# files out of its drop folders and the demo empties them, so none of them may be one of these.
SYSTEM_FOLDERS = frozenset(map(Path, ["/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt",
                                      "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
                                      "/var/tmp"]))  # fmt: skip
SYSTEM_TREES = tuple(map(Path, ["/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr"]))


def folder_problem(folders: dict[str, Path]) -> str | None:
    """Why these folders are unsafe to run with, or None: a system folder, the home folder, two keys naming
    the same folder, or one folder inside another (a drop folder would then see the other as a sub-folder)."""
    home = Path(os.path.expanduser("~"))
    for key, folder in folders.items():
        if folder in SYSTEM_FOLDERS or folder == home or any(folder.is_relative_to(t) for t in SYSTEM_TREES):
            return f"{key} = {folder} is a system or home folder; point it at a folder of its own"
    items = list(folders.items())
    for index, (key, folder) in enumerate(items):
        for other_key, other in items[index + 1 :]:
            if folder == other:
                return f"{key} and {other_key} are the same folder ({folder}); give each its own folder"
            if folder.is_relative_to(other) or other.is_relative_to(folder):
                inner, outer = (key, other_key) if folder.is_relative_to(other) else (other_key, key)
                return f"{inner} is inside {outer}; give each a folder of its own, side by side"
    return None


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Read and validate the config; `config` defaults to $SCOREHOUSE_CONFIG, then ./scorehouse.toml of the repo.

    Raises ConfigError naming each wrong field, so a bad file fails before any work starts.
    """
    path = Path(config or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).resolve()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: pass --config PATH or set {CONFIG_ENV}")
    previous = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(path)
    try:
        overrides.setdefault("base_dir", path.parent)
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error, path)) from None
    except SettingsError as error:
        raise ConfigError(_describe_override(error)) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config {path} is not valid TOML: {error}. Fix the file and run again.") from None
    finally:
        if previous is None:
            del os.environ[CONFIG_ENV]
        else:
            os.environ[CONFIG_ENV] = previous


def _describe(error: ValidationError, path: Path) -> str:
    """One line: every problem, each with its field's path, and what to do."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"{where}: {item['msg']}")
    prefix = Settings.model_config.get("env_prefix")
    return (
        f"config {path} is not valid ({error.error_count()} problem(s)): {'; '.join(problems)}. "
        f"Fix the file or the matching {prefix}... variable and run again."
    )


def _describe_override(error: SettingsError) -> str:
    """pydantic-settings reads a section given as one variable (SCOREHOUSE_MODEL) as JSON and fails without
    naming the variable; name the variables that may be at fault."""
    prefix = str(Settings.model_config.get("env_prefix"))
    named = sorted(name for name in os.environ if name.upper().startswith(prefix) and name.upper() != CONFIG_ENV)
    suspects = ", ".join(named) or f"the {prefix}... variables"
    return (
        f"an environment override is not valid ({error}): a whole section or a list must be JSON, "
        f"e.g. {prefix}MODEL__PARAMS='{{\"max_depth\": 3}}'; check or unset {suspects}"
    )
