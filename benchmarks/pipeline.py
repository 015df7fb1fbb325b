"""Throughput and memory of `edi ingest` on generated flows (a benchmark, not a test).

For each case (CPP bulk FSO1110A `.xml`, UBL FSO1100A `.tar.gz`; 1,000 and 10,000 invoices):
generate the flow with `edi.gen`, make a fresh spool + SQLite database, import the generated
directory (`edi directory import`), then time `edi ingest FLOW` in a fresh subprocess. Prints
invoices per second (wall clock, and per CPU second of the ingest process and its children),
the peak RSS of the ingest process tree (largest single process, from wait4's rusage), and the
ratio RSS(10k) / RSS(1k) per format (target <= 1.5). The CPP target is >= 2,000 invoices/s on
one core; ingest of a CPP flow uses one process.

    .venv/bin/python benchmarks/pipeline.py [--sizes 1000,10000] [--formats cpp,ubl]
        [--errors 0.02] [--keep DIR] [--set SECTION_KEY=VALUE ...] [--profile cpp:10000]

`--set validation_schematron=false` (for example) is passed as `EDI_VALIDATION_SCHEMATRON=false`.
`--profile FORMAT:N` runs that case once more under cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edi import gen as generator  # noqa: E402

BIN = Path(sys.executable).parent / "edi"
EDI = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "edi.cli"]
FORMATS = {"cpp": "FSO1110A", "ubl": "FSO1100A"}


def write_config(site: Path) -> Path:
    cfg = site / "edi.toml"
    cfg.write_text(
        f'[spool]\nroot = "{site / "spool"}"\n[database]\nurl = "sqlite:///{site / "edi.db"}"\n'
        '[directory]\nej_patterns = { "11000201100044" = "^14\\\\d{8}$" }\n'
        '[sftp]\nenabled = false\n[web]\nenabled = false\n[logging]\nformat = "json"\nlevel = "warning"\n'
        '[[partners]]\napp = "DEMO"\ninterfaces = ["FSO1100A", "FSO1106A", "FSO1110A"]\n'
    )
    return cfg


def run_measured(cmd: list[str], env: dict) -> tuple[float, float, int, int, str]:
    """Run `cmd`; returns (wall s, cpu s, peak RSS KiB, exit code, stderr tail)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, proc.returncode, tail


def run_case(fmt: str, n: int, errors: float, work: Path, env: dict, profile: bool = False) -> dict:
    site = work / f"{fmt}-{n}"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    flow = generator.generate(FORMATS[fmt], n, site / "gen", errors=errors, seed=n)
    cfg = write_config(site)
    subprocess.run([*EDI, "--config", str(cfg), "directory", "import", str(flow.structures_csv),
                    "--services", str(flow.services_csv)], check=True, stdout=subprocess.DEVNULL, env=env)
    cmd = [*EDI, "--config", str(cfg), "ingest", str(flow.path)]
    if profile:
        out = site / "ingest.prof"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "edi.cli", *cmd[len(EDI):]]
    wall, cpu, rss, rc, tail = run_measured(cmd, env)
    if rc != 0:
        raise SystemExit(f"edi ingest failed ({fmt}, {n}): rc={rc}\n{tail}")
    return {"format": fmt, "invoices": n, "bytes": flow.path.stat().st_size, "wall": wall, "cpu": cpu,
            "rss_kib": rss, "profile": site / "ingest.prof" if profile else None}


def print_profile(path: Path, top: int = 25) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--formats", default="cpp,ubl")
    ap.add_argument("--errors", type=float, default=0.02)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION_KEY=VALUE")
    ap.add_argument("--profile", metavar="FORMAT:N", help="profile that case with cProfile")
    args = ap.parse_args(argv)

    env = {k: v for k, v in os.environ.items() if not k.startswith("EDI_")}
    for item in args.set:
        key, _, value = item.partition("=")
        env["EDI_" + key.upper()] = value
    work = args.keep or Path(tempfile.mkdtemp(prefix="edi-bench-"))
    sizes = [int(s) for s in args.sizes.split(",")]
    try:
        results = []
        print(f"{'format':6} {'invoices':>8} {'MB':>7} {'wall s':>7} {'inv/s':>7} {'cpu s':>7} "
              f"{'inv/cpu-s':>9} {'peak RSS MiB':>12}")
        for fmt in args.formats.split(","):
            for n in sizes:
                r = run_case(fmt, n, args.errors, work, env)
                results.append(r)
                print(f"{fmt:6} {n:8d} {r['bytes'] / 1e6:7.1f} {r['wall']:7.2f} {n / r['wall']:7.0f} "
                      f"{r['cpu']:7.2f} {n / r['cpu']:9.0f} {r['rss_kib'] / 1024:12.1f}", flush=True)
        for fmt in args.formats.split(","):
            rows = {r["invoices"]: r for r in results if r["format"] == fmt}
            if len(sizes) >= 2 and min(sizes) in rows and max(sizes) in rows:
                ratio = rows[max(sizes)]["rss_kib"] / rows[min(sizes)]["rss_kib"]
                print(f"{fmt}: RSS({max(sizes)}) / RSS({min(sizes)}) = {ratio:.2f} "
                      f"({'ok' if ratio <= 1.5 else 'ABOVE'} target 1.5)")
        if args.profile:
            fmt, _, n = args.profile.partition(":")
            r = run_case(fmt, int(n), args.errors, work, env, profile=True)
            print(f"\nprofile of {fmt} {n} (wall {r['wall']:.2f} s under cProfile):")
            print_profile(r["profile"])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
