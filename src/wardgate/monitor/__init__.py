"""Live abuse detection on the gateway's own request stream (see docs/monitoring.md).

The parts: :mod:`~wardgate.monitor.config` (rules and actions), :mod:`~.events` (what a
detector sees of a request), :mod:`~.state` (in-process or Redis), :mod:`~.detectors`,
:mod:`~.enforcement` (what the request path checks), :mod:`~.webhooks` (alerts out),
:mod:`~.monitor` (ties them together) and :mod:`~.hooks` (where the gateway calls in).

Only the configuration is imported here: ``wardgate.config`` needs it, and everything else
depends on ``wardgate.config``.
"""

from __future__ import annotations

from wardgate.monitor.config import MonitorConfig, RuleConfig, WebhookConfig, WorkingHours

__all__ = ["MonitorConfig", "RuleConfig", "WebhookConfig", "WorkingHours"]
