"""Archive and XML bombs (issue 8): time and peak RSS of `edi ingest` on each, in a fresh process.

- PAX header bomb: one 400 MB PAX header in a ~400 KB .tar.gz;
- directory bomb: 1,000,000 directory entries (~2 MB .tar.gz);
- element bombs: a CPP flow padded to 50 MB with 13 million `<x/>` after `</CPPFactures>`; a
  UBL invoice padded to 25 MB with 6 million `<x/>` inside it.

Each must be refused (IRR_EXTRAC / IRR_SYNTAX / IRR_TAILLE) with a peak RSS under 200 MB, the
tar bombs in about a second. Default settings (`[limits]` as in config/edi.toml).

    .venv/bin/python benchmarks/bombs.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import EDI, run_measured, write_config  # noqa: E402

from edi import gen as generator  # noqa: E402
from tests import bombs  # noqa: E402

FLOW_ID = "DEMO0" + "B" * 20


def build(site: Path) -> list[tuple[str, Path]]:
    gen_dir = site / "gen"
    cpp = generator.generate("FSO1110A", 2, gen_dir / "cpp", seed=1).path.read_bytes()
    ubl = generator.generate("FSO1100A", 1, gen_dir / "ubl", seed=2).path.read_bytes()
    cases = []
    path = site / f"FSO1100A_DEMO_{FLOW_ID[:-1]}0.xml"  # refused at once: start-up cost alone
    path.write_bytes(b"")
    cases.append(("start-up only (empty)", path))
    path = site / f"FSO1100A_DEMO_{FLOW_ID[:-1]}1.tar.gz"
    with open(path, "wb") as out:
        bombs.header_bomb(out, tarfile.XHDTYPE, 400_000_000, "facture.xml", ubl)
    cases.append(("PAX header 400 MB", path))
    path = site / f"FSO1100A_DEMO_{FLOW_ID[:-1]}2.tar.gz"
    with open(path, "wb") as out:
        bombs.directory_bomb(out, 1_000_000, "facture.xml", ubl)
    cases.append(("1,000,000 directories", path))
    path = site / f"FSO1110A_DEMO_{FLOW_ID[:-1]}3.xml"
    with open(path, "wb") as out:
        bombs.padded(out, cpp, b"</CPPFactureMixte>", 13_000_000)
    cases.append(("CPP + 13 M <x/>", path))
    path = site / f"FSO1100A_DEMO_{FLOW_ID[:-1]}4.xml"
    with open(path, "wb") as out:
        bombs.padded(out, ubl, b"</Invoice>", 6_000_000)
    cases.append(("UBL + 6 M <x/>", path))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder to keep (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="edi-bombs-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = write_config(work)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work)}
    subprocess.run([*EDI, "--config", str(cfg), "init"], check=False, stdout=subprocess.DEVNULL, env=env)
    print(f"{'case':24} {'file MB':>8} {'wall s':>7} {'cpu s':>7} {'peak RSS MiB':>12}  outcome")
    for label, path in build(work):
        wall, cpu, rss, rc, tail = run_measured([*EDI, "--config", str(cfg), "ingest", str(path)], env)
        shown = subprocess.run([*EDI, "--config", str(cfg), "flows", "show", path.name.split("_")[2].split(".")[0],
                                "--json"], capture_output=True, text=True, env=env)
        try:
            flow = json.loads(shown.stdout)
            outcome = f"{flow.get('state')} {flow.get('error_code') or ''}".strip()
        except json.JSONDecodeError:
            outcome = f"exit {rc}: {tail[-200:]}"
        print(f"{label:24} {path.stat().st_size / 1e6:8.2f} {wall:7.2f} {cpu:7.2f} {rss / 1024:12.0f}  {outcome}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
