"""`/healthz` and `/metrics`: what a load balancer and Prometheus read, without login.

Health: the database answers, the spool is writable, plus any check the host service adds
(`edi serve` can add its workers and SFTP listener). Metrics are computed from the database at
each scrape (a custom collector), so every process serving the console reports the same figures.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import text

from edi import db
from edi.db.models import IN_PROGRESS, ON_HOLD, RECEIVED
from edi.web.search import metric_counts


def check_database(cfg) -> str:
    with db.engine_for(cfg.database_url).connect() as conn:
        conn.execute(text("SELECT 1"))
    return "ok"


def check_spool(cfg) -> str:
    probe = cfg.spool_root / "work" / f".healthz-{os.getpid()}"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(b"ok")
    probe.unlink()
    return "ok"


def health(cfg, extra: dict[str, Callable[[], str]] | None = None) -> tuple[bool, dict]:
    """Each check's answer ("ok" or the French reason of its failure), and whether all passed."""
    checks = {"database": lambda: check_database(cfg), "spool": lambda: check_spool(cfg), **(extra or {})}
    results, healthy = {}, True
    for name, check in checks.items():
        try:
            results[name] = check()
        except Exception as exc:  # noqa: BLE001 - a failing check is the answer, not a crash
            results[name] = f"en échec : {exc}"
        healthy = healthy and results[name] == "ok"
    return healthy, results


class _DatabaseCollector:
    def __init__(self, cfg):
        self.cfg = cfg

    def collect(self):
        counts = metric_counts(self.cfg.database_url)
        flows = CounterMetricFamily("edi_flows", "Flux reçus, par état", labels=["state"])
        for state, n in sorted(counts["flows"].items()):
            flows.add_metric([state], n)
        invoices = CounterMetricFamily("edi_invoices", "Factures, par issue et statut",
                                       labels=["outcome", "status"])
        for (accepted, status), n in sorted(counts["invoices"].items()):
            invoices.add_metric(["accepted" if accepted else "rejected", status], n)
        findings = CounterMetricFamily("edi_findings", "Anomalies relevées, par règle et gravité",
                                       labels=["rule", "severity"])
        for code, severity, n in sorted(counts["findings"]):
            findings.add_metric([code, severity], n)
        held = GaugeMetricFamily("edi_flows_held", "Flux en attente de retraitement (IN_ATTENTE_RETRAITEMENT)",
                                 value=counts["flows"].get(ON_HOLD, 0))
        queue = GaugeMetricFamily("edi_queue_depth", "Flux reçus ou en cours, pas encore traités",
                                  value=counts["flows"].get(RECEIVED, 0) + counts["flows"].get(IN_PROGRESS, 0))
        return [flows, invoices, findings, held, queue]


def registry(cfg) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_DatabaseCollector(cfg))
    return reg


def metrics_text(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
