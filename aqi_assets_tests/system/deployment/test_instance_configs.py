"""Every committed instance config loads with Dagster's own schema against a real PostgreSQL, and says what the
README says it does; the Helm values carry the same limits; no secret is written in any of them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
import tomllib
import yaml
from dagster._core.definitions.run_request import InstigatorType  # test-only: the retention settings key

from aqi_assets.lib.deploy.service import PRODUCTION_INSTANCE
from aqi_assets_tests.support.moto_server import threaded_moto_server
from aqi_assets_tests.support.samples import PROJECT_ROOT

from .conftest import Postgres

pytestmark = pytest.mark.deployment

DEPLOY = PROJECT_ROOT / "deploy"
LOCAL_INSTANCES = [PRODUCTION_INSTANCE, DEPLOY / "dagster-s3-logs.yaml"]


def load_instance(config: Path, home: Path) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config, home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


@pytest.mark.parametrize("config", LOCAL_INSTANCES, ids=lambda path: path.name)
def test_production_instances_load_against_postgres(
    config: Path, postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in postgres.new_database(f"cfg_{config.stem.replace('-', '_')}").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_DIR", str(tmp_path / "compute_logs"))
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_BUCKET", "aqi-compute-logs")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with threaded_moto_server() as endpoint:  # the S3 variant builds a boto3 client: keep it on loopback
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        with load_instance(config, tmp_path / "home") as instance:
            # The storage is PostgreSQL and usable: the schema was created in the application role's database.
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            assert instance.get_runs(limit=1) == []
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"

            concurrency = instance.get_concurrency_config()
            assert concurrency.run_queue_config.max_concurrent_runs == 4
            tag_limits = concurrency.run_queue_config.tag_concurrency_limits
            limits = {(limit["key"], str(limit.get("value"))) for limit in tag_limits}
            assert ("aqi/period", "{'applyLimitPerUniqueValue': True}") in limits
            assert ("dagster/job_name", "aqi_history_audit_job") in limits
            assert concurrency.pool_config.default_pool_limit == 1
            assert concurrency.pool_config.pool_granularity.value == "op"

            assert instance.run_monitoring_enabled
            assert instance.run_monitoring_start_timeout_seconds == 180
            sensor_retention = {
                status.value: days
                for status, days in instance.get_tick_retention_settings(InstigatorType.SENSOR).items()
            }
            assert sensor_retention["SKIPPED"] == 7 and sensor_retention["FAILURE"] == 30
            assert set(instance.get_tick_retention_settings(InstigatorType.SCHEDULE).values()) == {90}
            expected_logs = "S3ComputeLogManager" if "s3" in config.name else "LocalComputeLogManager"
            assert type(instance.compute_log_manager).__name__ == expected_logs
            assert not instance.telemetry_enabled


@pytest.mark.parametrize(
    "config", [*LOCAL_INSTANCES, DEPLOY / "ecs" / "dagster.yaml"], ids=lambda path: str(path.relative_to(DEPLOY))
)
def test_instance_configs_name_secrets_never_hold_them(config: Path) -> None:
    document = yaml.safe_load(config.read_text())
    postgres_db = document["storage"]["postgres"]["postgres_db"]
    for field in ("username", "password", "hostname", "port", "db_name"):
        assert set(postgres_db[field]) == {"env"}, f"{config}: {field} must come from the environment"
    assert postgres_db["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert postgres_db["scheme"] == "postgresql+psycopg2"


def test_helm_values_mirror_the_instance_and_keep_the_password_in_a_secret() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    instance = yaml.safe_load(PRODUCTION_INSTANCE.read_text())
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("-m") + 1] == pyproject["tool"]["dagster"]["module_name"]
    assert args[args.index("--location-name") + 1] == pyproject["tool"]["dagster"]["code_location_name"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"

    assert values["postgresql"]["enabled"] is False
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]

    # Dagster refuses run limits both in the run coordinator and under `concurrency`; the chart writes
    # coordinator limits whenever the coordinator block is enabled, so it stays off and the limits live here.
    assert values["dagsterDaemon"]["runCoordinator"] == {"enabled": False}
    runs = instance["concurrency"]["runs"]
    assert values["concurrency"]["runs"]["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert values["concurrency"]["runs"]["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert values["concurrency"]["pools"] == {"defaultLimit": 1, "granularity": "op"}
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["enabled"] is True
    for key, value in instance["run_monitoring"].items():
        if key != "enabled":
            camel = key.split("_")[0] + "".join(part.title() for part in key.split("_")[1:])
            assert monitoring[camel] == value, key
    # With includeConfigInLaunchedRuns the code server's resources would replace the run Jobs' own.
    assert "resources" not in deployment
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]["resources"]
    assert (
        values["retention"]["sensor"]["purgeAfterDays"]["skipped"]
        == instance["retention"]["sensor"]["purge_after_days"]["skipped"]
    )
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"


def test_no_committed_deploy_file_holds_a_credential() -> None:
    suspicious = re.compile(r"(password|secret|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+=_-]{8,}", re.IGNORECASE)
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in {".yaml", ".json", ".conf"}:
            for line in path.read_text().splitlines():
                if line.strip().startswith("#") or "arn:aws:secretsmanager:" in line:
                    continue  # comments, and references to Secrets Manager entries (names, not values)
                assert not suspicious.search(line), f"{path}: {line.strip()}"
