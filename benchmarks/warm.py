"""CPU per invoice of a warm `edi serve`, schematron off (a benchmark, not a test).

What the pipeline costs around the EN 16931 rules: in a fresh process, the same set-up as
`benchmarks/schematron.py`'s warm case (fresh spool + SQLite, generated directory imported,
`[validation] processes = 1`, so every check runs in this process) but with `[validation]
schematron = false`; a 40-invoice warm-up flow is taken (XSD compiled, database and directory
warm), then N UBL invoices (`edi.gen` FSO1100A `.tar.gz`, seed 1, no errors) go through the same
code path as `edi ingest`. Prints the CPU time of the process (user + system: file creation
counts) per invoice, best of `--repeat` fresh sites, and the wall clock.

    .venv/bin/python benchmarks/warm.py [--invoices 1000] [--repeat 3] [--work /dev/shm/edi-warm]
        [--profile 30]

`--work` chooses the folder of the sites (default: a temp folder on disk; /dev/shm takes the
disk's noise out when comparing code changes; on this VM, creating a file costs ~0.03 ms on
/work's ext4 but ~0.5 ms of system time in /tmp). `--profile N` runs once more under cProfile
(the measured flow only) and prints the N top functions by cumulative and by own time.
"""

from __future__ import annotations

import argparse
import json
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
from schematron import new_site, print_profile  # noqa: E402  (benchmarks/schematron.py: same sites)


def run(cfg_path: str, warm_flow: str, flow: str, profile: str) -> None:
    """In a fresh interpreter: warm-up flow, then the measured flow (profiled into the file
    `profile` when given); prints JSON."""
    from edi import config, log
    from edi.worker import ingest_paths

    cfg = config.load(cfg_path)
    log.configure("json", "warning")
    ingest_paths(cfg, [Path(warm_flow)])
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, sys0, started = time.process_time(), os.times().system, time.perf_counter()
    [done] = ingest_paths(cfg, [Path(flow)])
    wall, cpu, system = time.perf_counter() - started, time.process_time() - cpu0, os.times().system - sys0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    print(json.dumps({"wall": wall, "cpu": cpu, "system": system, "invoices": done.invoice_count,
                      "accepted": done.accepted_count}))


def measure(flow, warm_flow, site: Path, env: dict, profile: Path | None = None) -> dict:
    cfg = new_site(flow, site, 1, False, env)
    cmd = [sys.executable, __file__, "--run", str(cfg), str(warm_flow.path), str(flow.path), str(profile or "")]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--invoices", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, help="folder of the sites, removed at the end (default: a temp folder)")
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    ap.add_argument("--run", nargs=4, metavar=("CONFIG", "WARM_FLOW", "FLOW", "PROFILE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run:
        return run(*args.run)

    env = {k: v for k, v in os.environ.items() if not k.startswith("EDI_")}
    work = args.work or Path(tempfile.mkdtemp(prefix="edi-bench-warm-"))
    n = args.invoices
    try:
        # the invoices of benchmarks/schematron.py (its defaults: seed 1, no errors)
        flow = generator.generate("FSO1100A", n, work / "gen", errors=0.0, seed=1, kinds=("amount", "siret", "iban", "xsd"))
        warm_flow = generator.generate("FSO1100A", 40, work / "genw", seed=1001)
        runs = []
        for i in range(args.repeat):
            r = measure(flow, warm_flow, work / f"site-{i}", env)
            assert r["invoices"] == n, r
            runs.append(r)
            print(f"run {i + 1}: cpu {r['cpu'] / n * 1000:.3f} ms/inv (system {r['system'] / n * 1000:.3f}), "
                  f"wall {r['wall'] / n * 1000:.3f} ms/inv, "
                  f"accepted {r['accepted']}/{r['invoices']}", flush=True)
        fastest = min(runs, key=lambda r: r["cpu"])
        cpu, wall = fastest["cpu"], min(r["wall"] for r in runs)
        print(f"warm edi serve, schematron off, checks in the process, {n} UBL invoices, {work}: "
              f"CPU {cpu / n * 1000:.3f} ms/inv ({n / cpu:.0f} inv/s per core; system "
              f"{fastest['system'] / n * 1000:.3f}), wall {wall / n * 1000:.3f} ms/inv (best of {args.repeat})")
        if args.profile:
            measure(flow, warm_flow, work / "site-profile", env, work / "warm.prof")
            print_profile(work / "warm.prof", args.profile)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
