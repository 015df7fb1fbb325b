"""`/healthz` and `/metrics`: what a load balancer and Prometheus read, without login.

Health: the database answers, the spool is writable, plus any check the host service adds
(`edi serve` adds its workers' heartbeat and the SFTP listener). Metrics come from the database
(a custom collector), so every process serving the console reports the same figures — but a
scrape must stay fast at a million invoices: the grouped counts are kept `COUNTS_SECONDS` and
shared by the scrapes meanwhile, and the stage durations are read incrementally from the trace
(only the flow-level steps added since the last scrape). The host service may add gauges of its
own (`edi serve`: SFTP sessions open).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from datetime import timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select, text

from edi import db, trace
from edi.db.models import IN_PROGRESS, ON_HOLD, RECEIVED, FlowStep
from edi.web.search import metric_counts

COUNTS_SECONDS = 5.0  # the grouped counts are recomputed at most this often
CATCH_UP_STEPS = 200_000  # trace rows read back at the first scrape (recent history only)
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, math.inf)
# stage: (the step that starts it, the step that ends it), from the flow's trace
STAGES = {
    "intake": (trace.RECEIVED, trace.ARCHIVED),  # claimed from in/, hashed, recorded, archived
    "queue": (trace.ARCHIVED, trace.CLAIMED),  # waiting for a worker
    "flow_checks": (trace.CLAIMED, trace.CHECKED),  # name, sender, FLOWID, size
    "invoices": (trace.CHECKED, trace.SPLIT),  # split and every invoice checked
    "commit": (trace.SPLIT, trace.FINISHED),  # delivery, reports built, the one commit
    "report_write": (trace.FINISHED, trace.WRITTEN),  # reports written into out/
    "total": (trace.RECEIVED, trace.FINISHED),
}
_ENDS = {end: stage for stage, (_, end) in STAGES.items() if stage != "total"}


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


class StageTimes:
    """Processing time per stage, from the trace: each scrape reads the flow-level steps added
    since the previous one (by primary key) and observes the time between a stage's first and
    last step. Flows whose start came before the first scrape's window are not counted."""

    MAX_OPEN = 100_000  # flows in progress remembered (a flow that never ends is forgotten)

    def __init__(self, url: str):
        self.url = url
        self.cursor: int | None = None
        self.open: dict[int, dict[str, float]] = {}
        self.buckets = {stage: [0] * len(BUCKETS) for stage in STAGES}
        self.sums = dict.fromkeys(STAGES, 0.0)
        self.lock = threading.Lock()

    def update(self) -> None:
        with self.lock, db.session(self.url) as s:
            if self.cursor is None:
                last = s.execute(select(func.max(FlowStep.id))).scalar() or 0
                self.cursor = max(0, last - CATCH_UP_STEPS)
            rows = s.execute(select(FlowStep.id, FlowStep.flow_id, FlowStep.step, FlowStep.at)
                             .where(FlowStep.id > self.cursor, FlowStep.invoice_id.is_(None))
                             .order_by(FlowStep.id).limit(CATCH_UP_STEPS)).all()
            for row_id, flow_id, step, at in rows:
                self.cursor = row_id
                self._step(flow_id, step, (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp())

    def _step(self, flow_id: int, step: str, at: float) -> None:
        seen = self.open.get(flow_id)
        if seen is None:
            if step != trace.RECEIVED:
                return
            if len(self.open) >= self.MAX_OPEN:
                self.open.pop(next(iter(self.open)))
            seen = self.open[flow_id] = {}
        if step == trace.WRITTEN and trace.WRITTEN in seen:
            return  # the first report written ends the stage
        seen[step] = at
        stage = _ENDS.get(step)
        if stage and STAGES[stage][0] in seen:
            self._observe(stage, at - seen[STAGES[stage][0]])
        if step == trace.FINISHED and trace.RECEIVED in seen:
            self._observe("total", at - seen[trace.RECEIVED])
        if step == trace.WRITTEN:
            self.open.pop(flow_id, None)

    def _observe(self, stage: str, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self.sums[stage] += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[stage][i] += 1

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily("edi_stage_seconds", "Durée de traitement par étape (d'après la trace)",
                                       labels=["stage"])
        with self.lock:
            for stage in STAGES:
                buckets = [("+Inf" if math.isinf(b) else str(b), n) for b, n in zip(BUCKETS, self.buckets[stage])]
                family.add_metric([stage], buckets, sum_value=self.sums[stage])
        return family


class _DatabaseCollector:
    def __init__(self, cfg, gauges: dict[str, tuple[str, Callable[[], float]]] | None = None):
        self.cfg = cfg
        self.gauges = gauges or {}
        self.stages = StageTimes(cfg.database_url)
        self._counts: tuple[float, dict] | None = None
        self._lock = threading.Lock()

    def counts(self) -> dict:
        """The grouped counts, recomputed at most every COUNTS_SECONDS (one scrape computes,
        the others meanwhile reuse them)."""
        with self._lock:
            if self._counts is None or time.monotonic() - self._counts[0] > COUNTS_SECONDS:
                self._counts = (time.monotonic(), metric_counts(self.cfg.database_url))
            return self._counts[1]

    def collect(self):
        counts = self.counts()
        self.stages.update()
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
        pushes = GaugeMetricFamily("edi_report_pushes", "Envois SFTP de comptes rendus, par état", labels=["state"])
        for state, n in sorted(counts["pushes"].items()):
            pushes.add_metric([state], n)
        extra = [GaugeMetricFamily(name, doc, value=read()) for name, (doc, read) in self.gauges.items()]
        return [flows, invoices, findings, held, queue, pushes, self.stages.family(), *extra]


def registry(cfg, gauges: dict[str, tuple[str, Callable[[], float]]] | None = None) -> CollectorRegistry:
    """`gauges`: name -> (help, reader) added by the host service."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_DatabaseCollector(cfg, gauges))
    return reg


def metrics_text(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
