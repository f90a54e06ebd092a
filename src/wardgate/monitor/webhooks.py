"""Alerts out: signed JSON webhooks, delivered from a background thread.

Each delivery is one POST of::

    {"text": "<one line for Slack-compatible receivers>", "alert": {...the audit evidence...}}

with ``X-Wardgate-Timestamp: <unix seconds>`` and, when ``secret_env`` names a set variable,
``X-Wardgate-Signature: sha256=<hex HMAC-SHA-256(secret, timestamp + "." + body)>`` — a
receiver recomputes it and rejects stale timestamps (replays). Failures are retried with
exponential backoff (connection errors, 408, 429, 5xx); other 4xx are not. A hook receives at
most ``per_rule_per_minute`` alerts of one rule per minute. Nothing here ever blocks a
request: ``send`` is a non-blocking put, and a full queue drops (and counts) the alert.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from wardgate.monitor.config import WebhookConfig

log = logging.getLogger(__name__)

_SEVERITY = {"info": 0, "warning": 1, "critical": 2}
_RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def slack_text(alert: dict[str, Any]) -> str:
    subject = alert.get("key_id") or alert.get("client_ip") or "?"
    return (
        f"[wardgate] {alert['severity'].upper()} {alert['rule']} on {alert['subject']} "
        f"{subject}: {alert['message']} (action: {alert['action']})"
    )


class WebhookSender:
    """One thread, one queue, for every configured hook."""

    def __init__(
        self,
        hooks: list[WebhookConfig],
        *,
        count: Callable[[str], None],
        queue_size: int = 1000,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._hooks = hooks
        self._count = count
        self._sleep = sleep
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self._sent: dict[tuple[int, str], list[float]] = {}
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None

    def start(self) -> None:
        if not self._hooks or self._thread is not None:
            return
        self._client = httpx.Client(follow_redirects=False)
        self._thread = threading.Thread(target=self._run, name="wardgate-webhooks", daemon=True)
        self._thread.start()

    def send(self, alert: dict[str, Any]) -> None:
        if not self._hooks:
            return
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self._count("dropped")

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None
        if self._client is not None:
            self._client.close()

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            for index, hook in enumerate(self._hooks):
                if _SEVERITY[alert["severity"]] < _SEVERITY[hook.min_severity]:
                    continue
                if not self._admit(index, hook, alert["rule"]):
                    self._count("rate_limited")
                    continue
                try:
                    ok = self._deliver(hook, alert)
                except Exception as exc:  # the thread must survive anything
                    log.error("webhook: unexpected %s", type(exc).__name__)
                    ok = False
                self._count("ok" if ok else "failed")

    def _admit(self, index: int, hook: WebhookConfig, rule: str) -> bool:
        now = time.monotonic()
        sent = [t for t in self._sent.get((index, rule), []) if t > now - 60]
        if len(sent) >= hook.per_rule_per_minute:
            self._sent[(index, rule)] = sent
            return False
        sent.append(now)
        self._sent[(index, rule)] = sent
        return True

    def _deliver(self, hook: WebhookConfig, alert: dict[str, Any]) -> bool:
        assert self._client is not None
        body = orjson.dumps({"text": slack_text(alert), "alert": alert})
        secret = os.environ.get(hook.secret_env) if hook.secret_env else None
        for attempt in range(hook.retries + 1):
            if attempt:
                self._sleep(hook.backoff_s * 2 ** (attempt - 1))
            stamp = str(int(time.time()))
            headers = {
                "content-type": "application/json",
                "x-wardgate-timestamp": stamp,
                "user-agent": "wardgate-monitor",
            }
            if secret:
                headers["x-wardgate-signature"] = sign(secret.encode(), stamp, body)
            try:
                response = self._client.post(
                    hook.url, content=body, headers=headers, timeout=hook.timeout_s
                )
            except httpx.HTTPError as exc:
                log.warning(
                    "webhook delivery failed (%s), attempt %d", type(exc).__name__, attempt + 1
                )
                continue
            if response.status_code < 300:
                return True
            log.warning("webhook answered %d, attempt %d", response.status_code, attempt + 1)
            if response.status_code not in _RETRYABLE:
                return False
        return False
