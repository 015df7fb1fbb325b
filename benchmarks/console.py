"""Response times of the console's pages and API on a seeded database (a benchmark, not a test).

Seeds a fresh database (SQLite in a temporary folder, or `--database URL` for PostgreSQL: use an
empty database) with N invoices in flows of 1,000 (90 % accepted with statuses spread over the
life cycle, two findings per rejected invoice, three senders), then asks each page and API call
`--repeat` times through the real ASGI application (FastAPI TestClient: routing, session or token
check, SQL, templates) and prints p50 / p95 in milliseconds. Target (issue 10): p95 under 300 ms
with 1,000,000 invoices on PostgreSQL; SQLite fine at 100,000.

    .venv/bin/python benchmarks/console.py [--invoices 100000] [--repeat 30] [--database URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from edi import config as config_mod  # noqa: E402
from edi import db  # noqa: E402
from edi.db.models import Finding, Flow, Invoice, Partner  # noqa: E402
from edi.web import search, users  # noqa: E402

APPS = ("DEMO", "AUTRE", "TROIS")
STATUSES = ("03", "03", "03", "04", "05", "06", "07", "10", "11", "12")
PER_FLOW = 1000


def seed(url: str, count: int) -> None:
    now = datetime.now(timezone.utc)
    with db.engine_for(url).begin() as conn:
        conn.execute(insert(Partner), [dict(app=a, name=a, interfaces="", enabled=True, created_at=now) for a in APPS])
        for n, start in enumerate(range(0, count, PER_FLOW), start=1):
            app, day = APPS[n % len(APPS)], now - timedelta(days=n % 30)
            size = min(PER_FLOW, count - start)
            conn.execute(insert(Flow), [dict(
                id=n, app=app, interface="FSO1110A", flow_ref=f"{app}{n:0>{25 - len(app)}}", flow_key=f"{app}/{n}",
                filename=f"FSO1110A_{app}_{n}.xml", state="IN_INTEGRE_PARTIEL", invoice_count=size,
                accepted_count=size * 9 // 10, received_at=day, finished_at=day, source="spool", size=1,
                sha256="", archive_path="", work_path="", attempts=0)])
            rows, findings = [], []
            for seq in range(1, size + 1):
                i = start + seq
                accepted = seq % 10 != 0
                rows.append(dict(
                    id=i, flow_id=n, seq=seq, number=f"F{i:08d}", doc_type="380", syntax="CPP",
                    supplier_id=f"{70000000000000 + i % 5000}", supplier_name="Fournisseur", supplier_id_type="1",
                    supplier_country="FR", recipient_siret=f"{21000000000000 + i % 2000}",
                    code_service=f"S{i % 50}", ej="", issue_date="2026-11-01", currency="EUR",
                    total_ht=f"{i % 100000 / 10:.2f}", total_ttc=f"{i % 100000 / 10 * 1.2:.2f}",
                    amount_ttc=Decimal(f"{i % 100000 / 10 * 1.2:.2f}") if accepted else None,
                    accepted=accepted, deposit_no=f"EDI{n:011d}{seq:011d}" if accepted else None,
                    certificate="", status=STATUSES[i % len(STATUSES)] if accepted else "", path="", size=1))
                if not accepted:
                    findings += [dict(flow_id=n, invoice_id=i, seq=k, code=c, reason="REJ_SEMAN", severity="fatal",
                                      message="m", location="", value="", invoice_number=f"F{i:08d}")
                                 for k, c in ((1, "BR-CO-15"), (2, "PLT-AMOUNT"))]
            conn.execute(insert(Invoice), rows)
            conn.execute(insert(Finding), findings)
            if n % 100 == 0:
                print(f"  {start + size} factures…", flush=True)
    if url.startswith("postgres"):
        with db.engine_for(url).connect() as conn:  # what autovacuum would have done by now
            conn.execute(text("ANALYZE"))
            conn.commit()


def timed(client, path: str, repeat: int, **kwargs) -> tuple[float, float]:
    def get():
        response = client.get(path, **kwargs)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])

    return measured(get, repeat)


def measured(compute, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        compute()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database", default="")
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from edi.web.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        url = args.database or f"sqlite:///{folder}/edi.db"
        cfg = config_mod.load(environ={"EDI_SPOOL_ROOT": f"{folder}/spool", "EDI_DATABASE_URL": url})
        started = time.perf_counter()
        seed(url, args.invoices)
        print(f"{args.invoices} factures en base ({url.split('@')[-1]}), {time.perf_counter() - started:.1f} s")
        users.add(url, "ops", "ops", "banc-d-essai-console")
        token = {"Authorization": f"Bearer {users.new_token(url, 'ops')}"}
        client = TestClient(create_app(cfg), base_url="https://bench")
        form = client.get("/connexion")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        client.post("/connexion", data={"login": "ops", "password": "banc-d-essai-console", "csrf": csrf})
        last = args.invoices // PER_FLOW
        cases = [
            ("tableau de bord", "/", {}),
            ("flux, 1re page", "/flux", {}),
            ("flux par émetteur et état", "/flux?partner=DEMO&state=IN_INTEGRE_PARTIEL", {}),
            ("factures, 1re page", "/factures", {}),
            ("factures, page 50", "/factures?page=50", {}),
            ("factures par statut", "/factures?status=07", {}),
            ("factures par SIRET destinataire", "/factures?recipient=21000000000007", {}),
            ("factures par numéro", f"/factures?number=F{args.invoices // 2:08d}", {}),
            ("factures par montant", "/factures?amount_min=100&amount_max=200", {}),
            ("factures par dates de dépôt", "/factures?since=2026-01-01&until=2999-01-01", {}),
            ("détail d'un flux (1re page de factures)", f"/flux/{last}", {}),
            ("détail d'un flux, page 5", f"/flux/{last}?page=5", {}),
            ("annuaire par ville", "/annuaire?city=paris", {}),
            ("API factures", "/api/v1/invoices?status=03", {"headers": token}),
            ("API une facture", f"/api/v1/invoices/EDI{last:011d}{1:011d}", {"headers": token}),
            ("/metrics", "/metrics", {}),
        ]
        print(f"{'page':<44} {'p50 ms':>8} {'p95 ms':>8}")
        for label, path, kwargs in cases:
            p50, p95 = timed(client, path, args.repeat, **kwargs)
            print(f"{label:<44} {p50:8.1f} {p95:8.1f}")
        # what the page and /metrics cache for a few seconds, computed each time
        for label, compute in (("tableau de bord, calcul sans cache", lambda: search.dashboard(url, search.Scope())),
                               ("/metrics, comptes sans cache", lambda: search.metric_counts(url))):
            p50, p95 = measured(compute, args.repeat)
            print(f"{label:<44} {p50:8.1f} {p95:8.1f}")
        db.dispose_all()


if __name__ == "__main__":
    main()
