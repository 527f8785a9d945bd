"""Every runnable service, by the name `vigil run NAME` takes."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.runtime.service import AppBase
    from services.runtime.settings import Settings

SERVICES: dict[str, str] = {
    "profile-learner": "services.profile_learner.app",
    "version-evictor": "services.version_evictor.app",
    "anomaly-detector": "services.anomaly_detector.app",
    "throttler": "services.throttler.app",
    "decision-log-archiver": "services.decision_log_archiver.app",
    "audit-report-writer": "services.audit_report_writer.app",
}


def build(name: str, settings: Settings) -> AppBase:
    """Instantiate a service's app; each app module exposes ``build(settings)``."""
    if name not in SERVICES:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    module = importlib.import_module(SERVICES[name])
    app: AppBase = module.build(settings)
    return app
