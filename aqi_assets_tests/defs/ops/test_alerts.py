"""Run-failure alerts: the payload, its delivery to a local webhook, and the failure sensor on a real failed run."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import dagster as dg
import pytest
from pytest_httpserver import HTTPServer

from aqi_assets.defs.ops.alerts import AlertWebhook, alert_resources, run_failure_alert
from aqi_assets.lib.common.alerts import (
    AlertDeliveryError,
    FailedStep,
    build_failure_payload,
    post_json,
    redact_webhook_url,
)
from aqi_assets_tests.support.http import local_http_server

HOOK_PATH = "/services/T000/B000/s3cretTOKEN"


@pytest.fixture()
def webhook() -> Iterator[HTTPServer]:
    with local_http_server() as server:
        yield server


def received_json(server: HTTPServer) -> list[dict]:
    return [json.loads(request.get_data()) for request, _ in server.log if request.path == HOOK_PATH]


def test_payload_is_short_slack_text_plus_structured_fields() -> None:
    payload = build_failure_payload(
        job_name="ingest_5min_job",
        run_id="abc-123",
        failed_steps=[FailedStep("raw_snapshot_5min", "GET https://u:pw@host/x?token=zz answered HTTP 503\n  boom")],
    )
    assert set(payload) >= {"text", "job", "run_id", "failed_steps", "error"}
    assert payload["job"] == "ingest_5min_job" and payload["run_id"] == "abc-123"
    assert payload["failed_steps"] == [{"step_key": "raw_snapshot_5min", "error": payload["error"]}]
    assert "ingest_5min_job" in payload["text"] and "abc-123" in payload["text"]
    assert "raw_snapshot_5min" in payload["text"] and "HTTP 503" in payload["text"]
    assert "pw" not in json.dumps(payload) and "zz" not in json.dumps(payload)
    assert "\n" not in payload["error"]  # one line per field; the full trace stays in Dagster

    long = build_failure_payload(job_name="j", run_id="r", error="x" * 5000, failed_steps=[])
    assert len(long["error"]) == 500 and long["error"].endswith("…")
    assert "no step" in long["text"]
    many = build_failure_payload(job_name="j", run_id="r", failed_steps=[FailedStep(f"s{i}") for i in range(13)])
    assert len(many["failed_steps"]) == 10 and "3 more" in many["text"]


def test_post_json_retries_server_errors_then_delivers(webhook: HTTPServer) -> None:
    webhook.expect_ordered_request(HOOK_PATH, method="POST").respond_with_data("busy", status=503)
    webhook.expect_ordered_request(HOOK_PATH, method="POST").respond_with_data("ok", status=200)
    status = post_json(webhook.url_for(HOOK_PATH), {"text": "hi"}, backoff_factor=0.01)
    assert status == 200
    assert received_json(webhook) == [{"text": "hi"}, {"text": "hi"}]
    assert webhook.log[0][0].headers["Content-Type"] == "application/json"


def test_post_json_failures_never_reveal_the_webhook_secret(webhook: HTTPServer) -> None:
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data(f"no such hook {HOOK_PATH}", status=404)
    with pytest.raises(AlertDeliveryError, match="HTTP 404") as refused:
        post_json(webhook.url_for(HOOK_PATH), {"text": "hi"})
    assert "s3cretTOKEN" not in str(refused.value)

    port = webhook.port
    webhook.clear()
    webhook.stop()
    with pytest.raises(AlertDeliveryError, match="not reachable") as unreachable:
        post_json(f"http://127.0.0.1:{port}{HOOK_PATH}", {"text": "hi"}, retries=1, backoff_factor=0.01)
    assert "s3cretTOKEN" not in str(unreachable.value)
    assert redact_webhook_url(f"https://hooks.slack.com{HOOK_PATH}") == "https://hooks.slack.com/***"
    webhook.start()  # the fixture stops it again


# --- the failure sensor on a real failed run ---------------------------------------------------------------


@dg.op
def fetch_step() -> int:
    return 1


@dg.op
def merge_step(value: int) -> None:
    raise RuntimeError(f"merge exploded on value {value}")


@dg.job
def doomed_job() -> None:
    merge_step(fetch_step())


@pytest.fixture(scope="module")
def failed_run() -> Iterator[tuple[dg.DagsterInstance, dg.ExecuteInProcessResult]]:
    with dg.DagsterInstance.ephemeral() as instance:
        result = doomed_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        yield instance, result


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def run_sensor(failed_run, resource: AlertWebhook) -> ListHandler:
    """Evaluate the failure sensor on the failed run; returns what it logged to the sensor log."""
    instance, result = failed_run
    context = dg.build_run_status_sensor_context(
        sensor_name=run_failure_alert.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"alert_webhook": resource},
    ).for_run_failure()
    captured = ListHandler()
    context.log.addHandler(captured)
    context.log.setLevel(logging.DEBUG)
    run_failure_alert(context)
    return captured


def test_failure_sensor_posts_job_run_step_and_error(webhook: HTTPServer, failed_run) -> None:
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("ok")
    log = run_sensor(failed_run, AlertWebhook(url=webhook.url_for(HOOK_PATH)))
    [payload] = received_json(webhook)
    run = failed_run[1].dagster_run
    assert payload["job"] == "doomed_job" and payload["run_id"] == run.run_id
    assert [step["step_key"] for step in payload["failed_steps"]] == ["merge_step"]
    assert "merge exploded on value 1" in payload["error"]
    assert payload["text"].startswith(":red_circle:") and run.run_id in payload["text"]
    assert "merge exploded on value 1" in log.text  # logged as well as posted
    assert "alert delivered" in log.text


def test_failure_sensor_without_webhook_only_logs(webhook: HTTPServer, failed_run) -> None:
    log = run_sensor(failed_run, AlertWebhook(url=""))
    assert webhook.log == []
    assert "merge exploded on value 1" in log.text and "merge_step" in log.text
    assert "logged only" in log.text


def test_failure_sensor_survives_a_broken_webhook(webhook: HTTPServer, failed_run) -> None:
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("gone", status=410)
    log = run_sensor(failed_run, AlertWebhook(url=webhook.url_for(HOOK_PATH)))  # must not raise
    assert len(received_json(webhook)) == 1
    assert "alert not delivered" in log.text and "HTTP 410" in log.text
    assert "s3cretTOKEN" not in log.text


def test_alert_resources_reads_the_variable_at_load_time(
    monkeypatch: pytest.MonkeyPatch, webhook: HTTPServer, failed_run
) -> None:
    monkeypatch.delenv("AQI_ALERT_WEBHOOK_URL", raising=False)
    unset = alert_resources()["alert_webhook"]
    assert unset.url == "" and not isinstance(unset.url, dg.EnvVar) and not unset.enabled
    monkeypatch.setenv("AQI_ALERT_WEBHOOK_URL", webhook.url_for(HOOK_PATH))
    configured = alert_resources()["alert_webhook"]
    # The field names the variable (the UI shows {"env": "AQI_ALERT_WEBHOOK_URL"}, never the secret URL) ...
    assert isinstance(configured.url, dg.EnvVar) and configured.url.env_var_name == "AQI_ALERT_WEBHOOK_URL"
    assert configured.url.get_value() == webhook.url_for(HOOK_PATH)
    # ... and the sensor resolves it to the variable's value: the alert reaches that webhook.
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("ok")
    log = run_sensor(failed_run, configured)
    assert [payload["job"] for payload in received_json(webhook)] == ["doomed_job"]
    assert "alert delivered" in log.text
