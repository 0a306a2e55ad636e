"""Run-failure alerting: `aqi_run_failure_alert` logs every failed run and posts it to a Slack-compatible webhook
(AQI_ALERT_WEBHOOK_URL) when one is set. RUNNING by default."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import dagster as dg
from pydantic import Field

from aqi_assets.defs.common.env import from_env
from aqi_assets.lib.common.alerts import (
    AlertDeliveryError,
    FailedStep,
    build_failure_payload,
    post_json,
    redact_webhook_url,
)


class ErrorInfo(Protocol):
    """The fields read from Dagster's serialisable error info (its class is not public API)."""

    message: str
    cls_name: str | None
    cause: ErrorInfo | None


class AlertWebhook(dg.ConfigurableResource):
    """Posts alert payloads to ``url``; with an empty ``url`` alerts are only logged."""

    url: str = Field(
        default="", description="Slack-compatible incoming webhook (AQI_ALERT_WEBHOOK_URL); empty: log only."
    )
    timeout_s: float = Field(default=5.0, description="Connect and read timeout of one POST.")
    retries: int = Field(default=3, description="Retries on connect errors, 429 and 5xx (urllib3 Retry).")

    @property
    def enabled(self) -> bool:
        return bool(self.url.strip())

    def send(self, payload: dict[str, Any], log: logging.Logger | logging.LoggerAdapter) -> bool:
        """Deliver ``payload``; True when the webhook accepted it. A failed delivery is logged, never raised:
        the alert text is already in the log, and a broken webhook must not turn into a failing sensor."""
        if not self.enabled:
            log.info("AQI_ALERT_WEBHOOK_URL is not set: the alert was logged only")
            return False
        try:
            status = post_json(self.url.strip(), payload, timeout_s=self.timeout_s, retries=self.retries)
        except AlertDeliveryError as error:
            log.error(f"alert not delivered: {error}")
            return False
        log.info(f"alert delivered to {redact_webhook_url(self.url)} (HTTP {status})")
        return True


def alert_resources() -> dict[str, AlertWebhook]:
    """The alert resource, configured from the environment when the code location loads."""
    return {"alert_webhook": from_env(AlertWebhook, {"url": "AQI_ALERT_WEBHOOK_URL"})}


def _user_error_message(error: ErrorInfo | None) -> str | None:
    """The user's own exception inside Dagster's wrappers ("Error occurred while executing op ...")."""
    while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    return error.message.strip() if error is not None else None


@dg.run_failure_sensor(
    name="aqi_run_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Logs every failed run and posts a short JSON alert to AQI_ALERT_WEBHOOK_URL when it is set.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook) -> None:
    run = context.dagster_run
    failed_steps = [
        FailedStep(
            step_key=event.step_key or "?",
            error=_user_error_message(event.step_failure_data.error),
        )
        for event in context.get_step_failure_events()
    ]
    run_error = _user_error_message(getattr(context.failure_event.event_specific_data, "error", None))
    # The step's own error says more than the run's "Execution of run failed" summary.
    error = next((step.error for step in failed_steps if step.error), None) or run_error
    error = error or context.failure_event.message
    payload = build_failure_payload(
        job_name=run.job_name,
        run_id=run.run_id,
        failed_steps=failed_steps,
        error=error,
        location=run.remote_job_origin.location_name if run.remote_job_origin else None,
    )
    context.log.error(payload["text"])  # always logged, whether or not a webhook is configured
    alert_webhook.send(payload, context.log)
