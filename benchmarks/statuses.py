"""Throughput and memory of a recipient's status flow (a benchmark, not a test).

For each size: a fresh spool + SQLite database with a sender (DEMO) and a recipient partner
(CHUDEMO, every SIRET of the generated directory); a CPP flow of N invoices deposited with
`edi ingest`; then the recipient's status flow for them (`edi gen --statuses`: N lines, the
realistic mix of 07, 08, 11, 04, 05, 06) timed with `edi ingest` in a fresh subprocess. Prints
lines per second (wall clock of the whole command, and of the processing alone: the flow's
claim to its commit, from its trace), CPU seconds and the peak RSS of the process (wait4), and
RSS(largest) / RSS(smallest) (memory flat: target <= 1.5). Target: >= 2,000 lines/s.

    .venv/bin/python benchmarks/statuses.py [--sizes 1000,10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import pipeline  # noqa: E402
from benchmarks.pipeline import EDI, run_measured  # noqa: E402
from edi import gen as generator  # noqa: E402

SIRETS = sorted(s.siret for s in generator.DIRECTORY_STRUCTURES if s.active)


def write_config(site: Path) -> Path:
    """The pipeline benchmark's configuration, plus the recipient partner."""
    cfg = pipeline.write_config(site)
    with cfg.open("a", encoding="utf-8") as fh:
        fh.write(f'[[partners]]\napp = "CHUDEMO"\nrole = "recipient"\nsirets = {json.dumps(SIRETS)}\n')
    return cfg


def edi(cfg: Path, *args: str) -> str:
    done = subprocess.run([*EDI, "--config", str(cfg), *args], capture_output=True, text=True, check=True)
    return done.stdout


def case(base: Path, n: int) -> dict:
    site = base / f"statuses-{n}"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    cfg = write_config(site)
    made = generator.generate("FSO1110A", n, site / "gen", seed=7)
    edi(cfg, "directory", "import", str(made.structures_csv), "--services", str(made.services_csv))
    edi(cfg, "ingest", str(made.path))
    edi(cfg, "gen", "--statuses", made.flow_id, "--seed", "1", "--out", str(site / "statuses"))
    (status_flow,) = (site / "statuses").glob("FEN1200A_*.xml")
    inbox = site / "spool" / "partners" / "CHUDEMO" / "in"
    target = inbox / status_flow.name
    shutil.copyfile(status_flow, target)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDI_")}
    wall, cpu, rss, code, tail = run_measured([*EDI, "--config", str(cfg), "ingest", str(target)], env)
    if code != 0:
        raise SystemExit(f"edi ingest failed ({code}):\n{tail}")
    con = sqlite3.connect(site / "edi.db")
    try:
        flow_id, lines, accepted, state = con.execute(
            "SELECT id, invoice_count, accepted_count, state FROM flow ORDER BY id DESC LIMIT 1").fetchone()
        claimed, finished = con.execute(
            "SELECT min(at) FILTER (WHERE step = 'claimed'), max(at) FILTER (WHERE step = 'finished') "
            "FROM flowstep WHERE flow_id = ?", (flow_id,)).fetchone()
    finally:
        con.close()
    processing = (datetime.fromisoformat(finished) - datetime.fromisoformat(claimed)).total_seconds()
    return dict(n=n, lines=lines, accepted=accepted, state=state, wall=wall, cpu=cpu, rss_kib=rss,
                processing=processing, size=status_flow.stat().st_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--keep", type=Path, help="work folder kept afterwards (default: a temporary one)")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="edi-bench-statuses-"))
    results = [case(base, int(n)) for n in args.sizes.split(",")]
    print("| lines | file MB | accepted | wall s | lines/s (wall) | processing s | lines/s (processing) "
          "| CPU s | peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['lines']:,} | {r['size'] / 1e6:.1f} | {r['accepted']:,} | {r['wall']:.2f} | "
              f"{r['lines'] / r['wall']:,.0f} | {r['processing']:.2f} | {r['lines'] / r['processing']:,.0f} | "
              f"{r['cpu']:.2f} | {r['rss_kib'] / 1024:.0f} |")
    if len(results) > 1:
        print(f"RSS({results[-1]['n']:,}) / RSS({results[0]['n']:,}) = "
              f"{results[-1]['rss_kib'] / results[0]['rss_kib']:.2f} (target <= 1.5)")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
