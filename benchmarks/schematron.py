"""Cost of the EN 16931 schematron, bare and inside the pipeline (a benchmark, not a test).

For the same N UBL invoices (`edi.gen`, FSO1100A `.tar.gz`, fixed seed), prints in one run:

  (a) the bare EN 16931 XSLT on saxonche, invoice by invoice, no pipeline:
      `Schematron("EN16931-UBL").check(member_bytes)` after a warm-up (compilation + a few invoices);
  (b) the whole pipeline, schematron on, one process: `edi ingest FLOW` in a fresh subprocess, fresh
      spool + SQLite database, generated directory imported, `[validation] processes = 1`;
  (c) the same with the schematron off (`[validation] schematron = false`);
  (d) the pipeline with 1 and with 2 validation worker processes (`processes = 1` is (b)).

and, for the native engine (`[validation] engine = "native"`, edi.validate.native), side by side
with Saxon on the same invoices (CPU time of this one process, i.e. per core):

  (n1) native EN 16931 rules alone, UBL, against (a);
  (n2) the same for CII (1,000 generated FSO1106A invoices) against the bare CII XSLT;
  (n3) `edi serve` warm with the native engine, checks in the process: invoices/s per core end
       to end, and the RSS of that process; (n4) the RSS of each worker of a pool of 2;

and the ratios (b)/(a) in time per invoice (target <= 1.3) and the speed-up of 2 workers over 1
(target >= 1.7), with the machine's own parallel capacity (two CPU-bound processes against one)
to read (d) by. Pipeline figures are the wall clock of the `edi ingest` process, start-up and
Saxon compilation included; "steady" figures subtract the wall clock of the same command on a
one-invoice flow (interpreter start, imports, schema creation, compilation), to show the cost per
invoice once warm.

    .venv/bin/python benchmarks/schematron.py [--invoices 1000] [--seed 1] [--errors 0]
        [--repeat 1] [--keep DIR] [--profile b|d2] [--native-only] [--differential N]

`--native-only` skips the Saxon pipeline cases (b)–(d) and prints (a), (n1)–(n4).
`--differential N` runs the whole differential corpus instead (N generated UBL and CII invoices
with every error kind, credit notes, every mutation of the first few, the insertions read
off the rules for an invoice, a credit note and a CII invoice, and the targeted documents of
one UBL and one CII invoice: each VAT category, the UBL optional groups and their mutations,
every element doubled): agreement with Saxon,
disagreements, and the rules never seen both firing and passing.

`--repeat R` runs every pipeline case R times and keeps the best (least disturbed) run.
`--profile CASE` runs case b (one process) or d2 (two workers; only the parent process is
profiled) once more under cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edi import gen as generator  # noqa: E402
from edi.validate.schematron import Schematron  # noqa: E402

BIN = Path(sys.executable).parent / "edi"
EDI = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "edi.cli"]
WARM_UP = 20  # invoices checked before the bare timing starts


def _burn(n: int) -> float:
    started = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i
    return time.perf_counter() - started


def parallel_capacity(n: int = 10_000_000) -> float:
    """How much faster two CPU-bound processes get through twice the work than one process
    does (2.0 on two real cores): what (d) can hope for on this machine."""
    import multiprocessing

    one = _burn(n)
    with multiprocessing.get_context("spawn").Pool(2) as workers:
        workers.map(_burn, [1000, 1000])  # started and warm
        started = time.perf_counter()
        workers.map(_burn, [n, n], chunksize=1)
        two = time.perf_counter() - started
    return 2 * one / two


def members(flow: Path) -> list[bytes]:
    with tarfile.open(flow, "r:gz") as tar:
        return [tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()]


def bare_xslt(raws: list[bytes]) -> tuple[float, int]:
    """(seconds for all invoices, fatal findings seen) of the EN 16931 UBL XSLT alone."""
    rules = Schematron("EN16931-UBL")
    rules.compile()
    for raw in raws[:WARM_UP]:
        rules.check(raw)
    fatal = 0
    started = time.perf_counter()
    for raw in raws:
        fatal += sum(1 for f in rules.check(raw) if f.fatal)
    return time.perf_counter() - started, fatal


def bare_rules(raws: list[bytes], ruleset: str, native: bool) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, fatal findings) of one rule set alone on every invoice: Saxon
    (`Schematron.check`, bytes in) or native (`NativeRules.check` on the parsed tree, as the
    pipeline hands it over; parsing included)."""
    from lxml import etree

    from edi.validate.native.rules import NativeRules

    rules = NativeRules(ruleset) if native else Schematron(ruleset)
    rules.compile()
    parser = etree.XMLParser(resolve_entities=False, no_network=True)

    def one(raw: bytes) -> list:
        return rules.check(raw, "", etree.fromstring(raw, parser)) if native else rules.check(raw)

    for raw in raws[:WARM_UP]:
        one(raw)
    fatal = 0
    cpu, started = time.process_time(), time.perf_counter()
    for raw in raws:
        fatal += sum(1 for f in one(raw) if f.fatal)
    return time.perf_counter() - started, time.process_time() - cpu, fatal


def rss_mb(pid: int | None = None) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 1e6


def write_config(site: Path, processes: int, schematron: bool, engine: str = "saxon") -> Path:
    cfg = site / "edi.toml"
    cfg.write_text(
        f'[spool]\nroot = "{site / "spool"}"\n[database]\nurl = "sqlite:///{site / "edi.db"}"\n'
        '[directory]\nej_patterns = { "11000201100044" = "^14\\\\d{8}$" }\n'
        f'[validation]\nprocesses = {processes}\nschematron = {str(schematron).lower()}\nengine = "{engine}"\n'
        '[sftp]\nenabled = false\n[web]\nenabled = false\n[logging]\nformat = "json"\nlevel = "warning"\n'
        '[[partners]]\napp = "DEMO"\ninterfaces = ["FSO1100A", "FSO1106A", "FSO1110A"]\n'
    )
    return cfg


def new_site(flow, site: Path, processes: int, schematron: bool, env: dict, engine: str = "saxon") -> Path:
    """An empty site (spool + SQLite) with its configuration and the flow's directory imported."""
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    cfg = write_config(site, processes, schematron, engine)
    subprocess.run([*EDI, "--config", str(cfg), "directory", "import", str(flow.structures_csv),
                    "--services", str(flow.services_csv)], check=True, stdout=subprocess.DEVNULL, env=env)
    return cfg


def ingest(flow, work: Path, name: str, processes: int, schematron: bool, env: dict,
           profile: Path | None = None) -> dict:
    """Fresh site, directory imported, then `edi ingest FLOW` timed; returns wall/cpu and outcome."""
    cfg = new_site(flow, work / name, processes, schematron, env)
    cmd = [*EDI, "--config", str(cfg), "ingest", str(flow.path)]
    if profile is not None:
        cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "edi.cli", *cmd[len(EDI):]]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"edi ingest failed ({name}):\n{tail}")
    shown = subprocess.run([*EDI, "--config", str(cfg), "flows", "show", flow.flow_id, "--json"], check=True,
                           capture_output=True, env=env, text=True)
    detail = json.loads(shown.stdout)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "invoices": detail["invoice_count"],
            "accepted": detail["accepted_count"],
            "codes": sorted({f["code"] for i in detail["invoices"] for f in i["findings"]})}


def warm_run(cfg_path: str, warm_flow: str, flow: str) -> None:
    """In a fresh interpreter: what `edi serve` does once running. Load the configuration, take
    a warm-up flow (workers started, XSD and XSLT compiled), wait until every worker is ready,
    then time the measured flow through the same code path as `edi ingest`. Prints JSON."""
    from edi import config, log
    from edi.validate import pool
    from edi.worker import ingest_paths

    cfg = config.load(cfg_path)
    log.configure("json", "warning")
    ingest_paths(cfg, [Path(warm_flow)])
    processes = cfg.validation.processes
    engine = cfg.validation.engine
    workers: list[int] = []
    if processes > 1:
        workers = [f.result() for f in pool.shared(processes).start(pool.Settings(engine=engine), "UBL")]
    cpu0, started = time.process_time(), time.perf_counter()
    [done] = ingest_paths(cfg, [Path(flow)])
    wall = time.perf_counter() - started
    print(json.dumps({"wall": wall, "parent_cpu": time.process_time() - cpu0, "invoices": done.invoice_count,
                      "accepted": done.accepted_count, "rss": rss_mb(),
                      "worker_rss": [rss_mb(pid) for pid in workers],
                      "saxon": "saxonche" in sys.modules}))


def warm(flow, warm_flow, work: Path, name: str, processes: int, env: dict, engine: str = "saxon") -> dict:
    cfg = new_site(flow, work / name, processes, True, env, engine)
    out = subprocess.run([sys.executable, __file__, "--warm-run", str(cfg), str(warm_flow.path), str(flow.path)],
                         check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["wall"])


def print_profile(path: Path, top: int = 30) -> None:
    import pstats

    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--invoices", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--errors", type=float, default=0.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    ap.add_argument("--profile", choices=("b", "d2"))
    ap.add_argument("--native-only", action="store_true")
    ap.add_argument("--differential", type=int, metavar="N")
    ap.add_argument("--warm-run", nargs=3, metavar=("CONFIG", "WARM_FLOW", "FLOW"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.warm_run:
        return warm_run(*args.warm_run)
    if args.differential:
        return differential(args.differential, args.seed)

    env = {k: v for k, v in os.environ.items() if not k.startswith("EDI_")}
    work = args.keep or Path(tempfile.mkdtemp(prefix="edi-bench-sch-"))
    n = args.invoices
    try:
        flow = generator.generate("FSO1100A", n, work / "gen", errors=args.errors, seed=args.seed,
                                  kinds=("amount", "siret", "iban", "xsd"))
        one = generator.generate("FSO1100A", 1, work / "gen1", seed=args.seed)
        warm_flow = generator.generate("FSO1100A", 40, work / "genw", seed=args.seed + 1000)
        raws = members(flow.path)
        assert len(raws) == n
        print(f"{n} UBL invoices, seed {args.seed}, errors {args.errors}, {flow.path.stat().st_size / 1e6:.1f} MB "
              f"tar.gz; {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs")

        bare_s, fatal = bare_xslt(raws)
        print(f"(a) bare EN 16931 XSLT (saxonche)     {bare_s:7.2f} s  {n / bare_s:7.0f} inv/s  "
              f"{bare_s / n * 1000:6.2f} ms/inv  ({fatal} fatal findings)", flush=True)
        native_section(raws, work, flow, warm_flow, args.seed, n, env)
        if args.native_only:
            return

        cases = {"b": (1, True), "c": (1, False), "d2": (2, True)}
        results = {}
        for name, (procs, sch) in cases.items():
            results[name] = best([ingest(flow, work, f"{name}-{i}", procs, sch, env) for i in range(args.repeat)])
            results[name + "-start"] = best([ingest(one, work, f"{name}-one-{i}", procs, sch, env)
                                             for i in range(args.repeat)])
        labels = {"b": "(b) pipeline, schematron on, 1 proc", "c": "(c) pipeline, schematron off, 1 proc",
                  "d2": "(d) pipeline, schematron on, 2 procs"}
        for name in ("b", "c", "d2"):
            r, start = results[name], results[name + "-start"]
            steady = r["wall"] - start["wall"]
            print(f"{labels[name]}  {r['wall']:7.2f} s  {n / r['wall']:7.0f} inv/s  "
                  f"{r['wall'] / n * 1000:6.2f} ms/inv  | start-up {start['wall']:.2f} s, steady "
                  f"{steady / (n - 1) * 1000:6.2f} ms/inv  | cpu {r['cpu']:.2f} s  "
                  f"accepted {r['accepted']}/{r['invoices']}", flush=True)
            assert r["invoices"] == n, r
        assert results["b"]["accepted"] == results["d2"]["accepted"] and results["b"]["codes"] == results["d2"]["codes"]
        b, c, d2 = results["b"], results["c"], results["d2"]
        ratio = b["wall"] / bare_s
        steady_b = b["wall"] - results["b-start"]["wall"]
        speedup = b["wall"] / d2["wall"]
        print()
        print(f"(b)/(a) pipeline with schematron vs bare XSLT: {ratio:.2f}x "
              f"({'ok' if ratio <= 1.3 else 'MISSED'}, target <= 1.3x); steady state {steady_b / bare_s:.2f}x")
        print(f"schematron share of (b): {(b['wall'] - c['wall']) / b['wall']:.0%}  "
              f"((b) - (c) = {b['wall'] - c['wall']:.2f} s vs bare {bare_s:.2f} s)")
        print(f"(d) speed-up 2 workers vs 1: {speedup:.2f}x ({'ok' if speedup >= 1.7 else 'MISSED'}, target >= 1.7x); "
              f"cpu {d2['cpu'] / b['cpu']:.2f}x that of 1 process")
        print("\nWarm service (what `edi serve` sees once running: warm-up flow taken, workers ready, "
              "then the same flow timed in the same process):")
        warm1 = best([warm(flow, warm_flow, work, f"w1-{i}", 1, env) for i in range(args.repeat)])
        warm2 = best([warm(flow, warm_flow, work, f"w2-{i}", 2, env) for i in range(args.repeat)])
        for label, r in (("(b1) warm, checks in the process   ", warm1), ("(b2) warm, pool of 2 workers       ", warm2)):
            assert r["invoices"] == n, r
            print(f"{label} {r['wall']:7.2f} s  {n / r['wall']:7.0f} inv/s  {r['wall'] / n * 1000:6.2f} ms/inv  "
                  f"({r['wall'] / bare_s:.2f}x bare)  accepted {r['accepted']}/{r['invoices']}")
        assert warm1["accepted"] == warm2["accepted"] == b["accepted"]
        warm_ratio, warm_speedup = warm2["wall"] / bare_s, warm1["wall"] / warm2["wall"]
        print(f"warm pipeline (default pool = cores) vs bare XSLT: {warm_ratio:.2f}x "
              f"({'ok' if warm_ratio <= 1.3 else 'MISSED'}, target <= 1.3x); 2 workers vs checks in one process: "
              f"{warm_speedup:.2f}x ({'ok' if warm_speedup >= 1.7 else 'MISSED'}, target >= 1.7x)")
        print(f"machine: 2 CPU-bound Python processes do {parallel_capacity():.2f}x the work of one in the same time "
              "(2.00 on two free cores)")
        if args.profile:
            procs, sch = cases[args.profile]
            out = work / f"profile-{args.profile}.prof"
            r = ingest(flow, work, f"profile-{args.profile}", procs, sch, env, profile=out)
            print(f"\nprofile of case {args.profile} (wall {r['wall']:.2f} s under cProfile):")
            print_profile(out)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def native_section(raws: list[bytes], work: Path, flow, warm_flow, seed: int, n: int, env: dict) -> None:
    """(n1)–(n4): the native engine side by side with Saxon, CPU time of one process (per core)."""
    cii_flow = generator.generate("FSO1106A", n, work / "gen-cii", seed=seed)
    cii = members(cii_flow.path)
    print("\nNative engine vs Saxon, same invoices, CPU of one process (= per core):")
    print(f"{'':24}{'Saxon ms/inv':>13}{'native ms/inv':>15}{'Saxon inv/s':>13}{'native inv/s':>14}"
          f"{'ratio':>8}  target")
    for label, ruleset, docs in (("(n1) UBL EN 16931 rules", "EN16931-UBL", raws),
                                 ("(n2) CII EN 16931 rules", "EN16931-CII", cii)):
        _, saxon_cpu, saxon_fatal = bare_rules(docs, ruleset, native=False)
        _, native_cpu, native_fatal = bare_rules(docs, ruleset, native=True)
        ratio = saxon_cpu / native_cpu
        print(f"{label:24}{saxon_cpu / len(docs) * 1000:13.2f}{native_cpu / len(docs) * 1000:15.2f}"
              f"{len(docs) / saxon_cpu:13.0f}{len(docs) / native_cpu:14.0f}{ratio:7.2f}x  >= 3x "
              f"{'ok' if ratio >= 3 else 'MISSED'}  (fatal findings {saxon_fatal} / {native_fatal})", flush=True)
    one = warm(flow, warm_flow, work, "n3", 1, env, engine="native")
    assert one["invoices"] == n, one
    per_core = n / one["parent_cpu"]
    print(f"(n3) edi serve warm, native, checks in the process: {n / one['wall']:.0f} inv/s wall, "
          f"{per_core:.0f} inv/s per core (CPU) (target >= 600 {'ok' if per_core >= 600 else 'MISSED'}); "
          f"RSS {one['rss']:.0f} MB; Saxon loaded: {one['saxon']}")
    two = warm(flow, warm_flow, work, "n4", 2, env, engine="native")
    rss = max(two["worker_rss"] or [0])
    print(f"(n4) pool of 2 workers, native: {n / two['wall']:.0f} inv/s wall; worker RSS "
          f"{', '.join(f'{r:.0f}' for r in two['worker_rss'])} MB (target < 100 {'ok' if rss < 100 else 'MISSED'})",
          flush=True)


def differential(n: int, seed: int) -> None:
    """The whole differential corpus (see --differential)."""
    from edi.validate.native import corpus, differential as diff

    started = time.perf_counter()
    base = list(generator.differential_corpus(n, seed=seed, errors=0.5))
    docs = list(base)
    firsts = [raw for name, raw in base if "avoir" not in name][:: max(1, n // 3)][:6]
    for raw in firsts:
        docs += list(diff.mutations(raw))
    cii = next(b for b in base if b[0].startswith("FSO1106A"))
    for name, raw in base[:2] + [cii]:
        docs += list(diff.insertions(raw, "EN16931-CII" if name.startswith("FSO1106A") else "EN16931-UBL"))
    for name, raw in (base[0], cii):  # what the generator never writes
        docs += [(f"{name}:{k}", d) for k, d in [*diff.targeted(raw), *diff.duplications(raw), *corpus.documents(raw)]]
    report = diff.compare(docs)
    print(f"differential corpus: {len(base)} generated documents + {len(docs) - len(base)} mutations; "
          f"{report.documents} compared in {time.perf_counter() - started:.0f} s")
    print(f"agreement with Saxon: {report.agreed}/{report.documents} = {report.agreement:.2%}")
    for d in report.disagreements[:50]:
        print(d)
    for ruleset in sorted(report.seen):
        missing = report.unexercised(ruleset)
        print(f"{ruleset}: {len(missing)} rule ids not seen both firing and passing: {' '.join(missing)}")


if __name__ == "__main__":
    main()
