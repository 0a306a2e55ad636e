"""Where run-failure alerts go: a Slack-compatible webhook (AQI_ALERT_WEBHOOK_URL), or the log only."""

from __future__ import annotations

import logging
from typing import Any

import dagster as dg
from pydantic import Field

from aqi_assets.core.alerts import AlertDeliveryError, post_json, redact_webhook_url
from aqi_assets.resources.env import env_or


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
    return {"alert_webhook": AlertWebhook(url=env_or("AQI_ALERT_WEBHOOK_URL", ""))}
