"""The ECS setup, exact: deploy/ecs/dagster.yaml loads with Dagster's schema (PostgreSQL storage on a real
PostgreSQL), the four task definitions register with ECS (a local moto server), and the EcsRunLauncher launches
a run as a Fargate RunTask of the run task definition, with the `execute_run` command and the environment the
run needs (PostgreSQL address from the environment, credentials from Secrets Manager, the shared data volume).

Outside ECS the launcher cannot read its own task's network configuration, so the test turns
`use_current_ecs_task_config` off and passes moto's subnet and security group in `run_task_kwargs`; everything
else is the committed file.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import dagster as dg
import pytest
import yaml
from dagster._core.test_utils import in_process_test_workspace  # test-only: a workspace without a code server
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from aqi_assets_tests.support.moto_server import threaded_moto_server
from aqi_assets_tests.support.samples import PROJECT_ROOT

from .conftest import Postgres

pytestmark = pytest.mark.deployment

ECS = PROJECT_ROOT / "deploy" / "ecs"
REGION = "eu-west-1"
CLUSTER = "aqi-dagster"


def register_task_definitions(ecs) -> dict[str, dict]:
    registered = {}
    for path in sorted((ECS / "task-definitions").glob("*.json")):
        definition = json.loads(path.read_text())
        registered[path.stem] = ecs.register_task_definition(**definition)["taskDefinition"]
    return registered


def test_ecs_run_launcher_starts_a_fargate_task_per_run(
    postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in postgres.new_database("ecs").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("DAGSTER_ECS_CLUSTER", CLUSTER)
    monkeypatch.setenv("DAGSTER_ECS_RUN_TASK_DEFINITION", "aqi-assets-run")
    monkeypatch.setenv("DAGSTER_COMPUTE_LOG_BUCKET", "aqi-dagster-compute-logs")

    with threaded_moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)  # boto3 uses it for every client the launcher makes
        ec2 = boto3.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # moto's RunTask needs it
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="aqi-runs", Description="runs", VpcId=vpc)["GroupId"]
        boto3.client("s3").create_bucket(
            Bucket="aqi-dagster-compute-logs", CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        ecs = boto3.client("ecs")
        ecs.create_cluster(clusterName=CLUSTER)
        registered = register_task_definitions(ecs)
        assert set(registered) == {"code-server", "daemon", "webserver", "run"}
        assert {d["family"] for d in registered.values()} == {
            "aqi-assets-code-server",
            "aqi-dagster-daemon",
            "aqi-dagster-webserver",
            "aqi-assets-run",
        }

        config = yaml.safe_load((ECS / "dagster.yaml").read_text())
        launcher = config["run_launcher"]["config"]
        launcher["use_current_ecs_task_config"] = False
        launcher["run_task_kwargs"]["networkConfiguration"] = {
            "awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "DISABLED"}
        }
        home = tmp_path / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))

        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_launcher).__name__ == "EcsRunLauncher"
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
            origin = LoadableTargetOrigin(module_name="aqi_assets.definitions", working_directory=str(PROJECT_ROOT))
            with in_process_test_workspace(instance, origin) as workspace:
                (location,) = workspace.code_locations
                (repository,) = location.get_repositories().values()
                remote_job = repository.get_full_job("ingest_5min_job")
                from aqi_assets.definitions import defs

                run = instance.create_run_for_job(
                    job_def=defs().resolve_job_def("ingest_5min_job"),
                    remote_job_origin=remote_job.get_remote_origin(),
                    job_code_origin=remote_job.get_python_origin(),
                    tags={"aqi/period": "5min"},
                )
                instance.launch_run(run.run_id, workspace)
                launched = instance.get_run_by_id(run.run_id)

        task_arn = launched.tags["ecs/task_arn"]
        (task,) = ecs.describe_tasks(cluster=CLUSTER, tasks=[task_arn], include=["TAGS"])["tasks"]
        assert task["launchType"] == "FARGATE"
        assert task["taskDefinitionArn"] == registered["run"]["taskDefinitionArn"]
        assert task["clusterArn"].endswith(f"cluster/{CLUSTER}")
        (override,) = task["overrides"]["containerOverrides"]
        assert override["name"] == "run"
        command = override["command"]
        assert command[:3] == ["dagster", "api", "execute_run"]
        args = dg.deserialize_value(command[3])
        assert type(args).__name__ == "ExecuteRunArgs"
        assert args.run_id == run.run_id
        assert args.job_origin.job_name == "ingest_5min_job"
        assert args.job_origin.repository_origin.code_pointer.module == "aqi_assets.definitions"
        # The instance the run task rebuilds names its secrets, never holds them.
        assert "DAGSTER_PG_PASSWORD" in command[3] and postgres.password not in command[3]
        tags = {tag["key"]: tag["value"] for tag in task.get("tags", [])}
        assert tags.get("dagster/run_id") == run.run_id
        assert tags.get("aqi/period") == "5min"  # propagate_tags

        # What the run container gets: the run task definition's environment, secrets and the shared volume.
        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        (container,) = definition["containerDefinitions"]
        environment = {item["name"]: item["value"] for item in container["environment"]}
        assert environment["AQI_DUCKDB_PATH"] == "/mnt/aqi/data/aqi.duckdb"
        assert {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_HOME"} <= set(environment)
        secrets = {item["name"]: item["valueFrom"] for item in container["secrets"]}
        assert set(secrets) == {"DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD"}
        assert all(value.startswith("arn:aws:secretsmanager:") for value in secrets.values())
        assert container["mountPoints"][0]["containerPath"] == "/mnt/aqi/data"
