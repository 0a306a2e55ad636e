"""Run-failure alerts: a short Slack-compatible JSON message, and its delivery to a webhook.

The payload is Slack's incoming-webhook shape (`{"text": ...}`) plus structured fields (job, run id,
failed steps, error) that other receivers (Mattermost, Teams bridges, a log collector) can use directly;
Slack ignores keys it does not know. Delivery retries through urllib3's `Retry` (connect errors, 429 with
Retry-After, 5xx) within a short total timeout, so an unreachable receiver never stalls the sensor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.util.retry import Retry

from aqi_assets.lib.common.fetch import DEFAULT_USER_AGENT, redact_text, redact_urllib3_logs

MAX_ERROR_CHARS = 500  # chat messages are for humans; the full stack trace stays in the Dagster run
MAX_STEPS_LISTED = 10
RETRY_STATUSES = (429, 500, 502, 503, 504)


class AlertDeliveryError(RuntimeError):
    """The webhook did not accept the alert; the message never contains the webhook URL's secrets."""


def redact_webhook_url(url: str) -> str:
    """Scheme and host only: webhook URLs carry their secret in the path (Slack: /services/T…/B…/token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}/***" if parts.scheme else "***"


def _mask_webhook(text: str, url: str) -> str:
    """``text`` (an error message) without the webhook URL or its path."""
    parts = urlsplit(url)
    secret_path = parts.path + (f"?{parts.query}" if parts.query else "")
    text = text.replace(url, redact_webhook_url(url))
    if secret_path.strip("/"):
        text = text.replace(secret_path, "/***")
    return redact_text(text)


@dataclass(frozen=True)
class FailedStep:
    step_key: str
    error: str | None = None


def _shorten(text: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    if text is None:
        return None
    text = redact_text(" ".join(text.split()))  # one line; credentials in URLs masked
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_failure_payload(
    *,
    job_name: str,
    run_id: str,
    failed_steps: Sequence[FailedStep] = (),
    error: str | None = None,
    run_url: str | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    """The alert for one failed run: ``text`` for chat, plus job / run_id / failed_steps / error fields."""
    steps = [{"step_key": step.step_key, "error": _shorten(step.error)} for step in failed_steps[:MAX_STEPS_LISTED]]
    first_error = _shorten(error) or next((step["error"] for step in steps if step["error"]), None)
    step_names = ", ".join(step["step_key"] for step in steps) or "no step (the run failed outside a step)"
    if len(failed_steps) > MAX_STEPS_LISTED:
        step_names += f" and {len(failed_steps) - MAX_STEPS_LISTED} more"
    lines = [f":red_circle: Dagster run failed: job `{job_name}`, run `{run_id}`", f"Failed step(s): {step_names}"]
    if first_error:
        lines.append(f"Error: {first_error}")
    if run_url:
        lines.append(f"Run: {run_url}")
    return {
        "text": "\n".join(lines),
        "job": job_name,
        "run_id": run_id,
        "failed_steps": steps,
        "error": first_error,
        "run_url": run_url,
        "location": location,
    }


def post_json(
    url: str,
    payload: dict[str, Any],
    *,
    timeout_s: float = 5.0,
    retries: int = 3,
    backoff_factor: float = 0.5,
    user_agent: str = DEFAULT_USER_AGENT,
) -> int:
    """POST ``payload`` as JSON; returns the HTTP status, raises `AlertDeliveryError` unless it is 2xx."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=0,  # a POST whose answer timed out may have been delivered: do not send it twice
        status=retries,
        backoff_factor=backoff_factor,
        backoff_max=5,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"POST"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    redact_urllib3_logs(urlsplit(url).path)  # a webhook's path is its secret; urllib3 logs it on retries
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    with urllib3.PoolManager() as pool:
        try:
            response = pool.request(
                "POST",
                url,
                body=body,
                headers=headers,
                retries=retry,
                timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            )
        except urllib3.exceptions.HTTPError as error:
            raise AlertDeliveryError(
                f"alert webhook {redact_webhook_url(url)} not reachable: {_mask_webhook(str(error), url)}"
            ) from None
    if not 200 <= response.status < 300:
        answer = _mask_webhook(response.data[:200].decode("utf-8", "replace"), url)
        raise AlertDeliveryError(f"alert webhook {redact_webhook_url(url)} answered HTTP {response.status}: {answer}")
    return response.status
