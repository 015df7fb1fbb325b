"""SFTP benchmark: N partners upload M flows each, at the same time, to a real `edi serve`.

    .venv/bin/python benchmarks/sftp.py --partners 4 --flows 5 --invoices 10

Sets up a platform in a temporary folder (configuration, generator directory, one ssh-keygen
key per partner given as `[[partners]] keys`), starts `edi serve` with SFTP on a free port, then
runs one paramiko session per partner that uploads its flows one after the other, and a second
session per partner that polls `/out` (every `--poll` seconds) for the integration reports.

Printed: latency from upload close (the server acknowledged CLOSE) to the report listed in
`/out` (median, 95th percentile, max; the polling adds up to `--poll` seconds), and throughput
over the whole run (first upload started to last report seen): flows/s and invoices/s.
Not a timed test: figures depend on the machine (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paramiko

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edi import db  # noqa: E402
from edi import gen as generator  # noqa: E402
from edi.ingest.sftp.auth import load_host_key  # noqa: E402
from edi.route.directory import import_directory  # noqa: E402

BIN = Path(sys.executable).parent / "edi"
EDI = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "edi.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def setup(work: Path, apps: list[str], args) -> tuple[Path, int, dict[str, Path]]:
    keys = {}
    for app in apps:
        keys[app] = work / f"id_{app.lower()}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", app, "-f", str(keys[app])], check=True)
    port = free_port()
    patterns = ", ".join(f'"{k}" = {json.dumps(v)}' for k, v in generator.EJ_PATTERNS.items())
    config = work / "edi.toml"
    config.write_text(
        f'[spool]\nroot = "{work / "spool"}"\n[database]\nurl = "sqlite:///{work / "edi.db"}"\n'
        f"[intake]\nsettle_seconds = 0.2\npoll_seconds = 0.2\n"
        f"[workers]\nprocesses = {args.workers}\n[validation]\nprocesses = {args.validation_processes}\n"
        f'[sftp]\nhost = "127.0.0.1"\nport = {port}\nmax_sessions_per_partner = 4\n'
        "[web]\nenabled = false\n"
        f'[logging]\nformat = "json"\nlevel = "warning"\n[directory]\nej_patterns = {{ {patterns} }}\n'
        + "".join(f'[[partners]]\napp = "{app}"\nkeys = [{json.dumps(keys[app].with_suffix(".pub").read_text().strip())}]\n'
                  for app in apps),
        encoding="utf-8",
    )
    structures, services = generator.write_directory(work / "directory")
    import_directory(f"sqlite:///{work / 'edi.db'}", structures, services)
    db.dispose_all()
    return config, port, keys


def connect(port: int, known_hosts: Path, app: str, key: Path) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port, username=app, key_filename=str(key), timeout=30,
                   look_for_keys=False, allow_agent=False)
    return client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=4)
    parser.add_argument("--flows", type=int, default=5, help="flows per partner")
    parser.add_argument("--invoices", type=int, default=10, help="invoices per flow")
    parser.add_argument("--interface", default="FSO1110A")
    parser.add_argument("--workers", type=int, default=1, help="[workers] processes")
    parser.add_argument("--validation-processes", type=int, default=0, help="[validation] processes (0 = cores)")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between listings of /out")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    apps = [f"P{i:03d}" for i in range(1, args.partners + 1)]
    with tempfile.TemporaryDirectory(prefix="edi-bench-sftp-") as tmp:
        work = Path(tmp)
        config, port, keys = setup(work, apps, args)
        flows = {app: [generator.generate(args.interface, args.invoices, work / f"gen-{app}-{i}", seed=i, partner=app)
                       for i in range(args.flows)] for app in apps}
        log = work / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDI_")}
        with log.open("wb") as fh:
            proc = subprocess.Popen([*EDI, "--config", str(config), "serve"], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=fh, env=env, cwd=work)
        try:
            host_key_path = work / "spool" / "sftp_host_key"
            end = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"edi serve exited:\n{log.read_text()[-2000:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > end:
                        raise SystemExit("edi serve did not listen within 60 s")
                    time.sleep(0.1)
            hk = load_host_key(host_key_path)
            known = work / "known_hosts"
            known.write_text(f"[127.0.0.1]:{port} {hk.get_name()} {hk.get_base64()}\n")

            closed: dict[str, float] = {}
            seen: dict[str, float] = {}
            errors: list[str] = []
            lock = threading.Lock()
            start = threading.Barrier(len(apps) + 1)

            def uploader(app: str) -> None:
                client = connect(port, known, app, keys[app])
                try:
                    sftp = client.open_sftp()
                    start.wait()
                    for flow in flows[app]:
                        sftp.put(str(flow.path), f"/in/{flow.path.name}")
                        report = f"CSO{args.interface[3:]}_{app}_{flow.flow_id}.xml"
                        with lock:
                            closed[report] = time.monotonic()
                finally:
                    client.close()

            def watcher(app: str) -> None:
                expected = {f"CSO{args.interface[3:]}_{app}_{f.flow_id}.xml" for f in flows[app]}
                client = connect(port, known, app, keys[app])
                deadline = time.monotonic() + args.timeout
                try:
                    sftp = client.open_sftp()
                    while expected and time.monotonic() < deadline:
                        listed = set(sftp.listdir("/out"))
                        now = time.monotonic()
                        for name in expected & listed:
                            with lock:
                                seen[name] = now
                        expected -= listed
                        time.sleep(args.poll)
                    if expected:
                        with lock:
                            errors.append(f"{app}: {len(expected)} report(s) missing after {args.timeout}s")
                finally:
                    client.close()

            threads = [threading.Thread(target=uploader, args=(a,)) for a in apps]
            threads += [threading.Thread(target=watcher, args=(a,)) for a in apps]
            for t in threads:
                t.start()
            start.wait()
            t0 = time.monotonic()
            for t in threads:
                t.join()
            if errors:
                print("\n".join(errors), file=sys.stderr)
                return 1
            elapsed = max(seen.values()) - t0
            latencies = [seen[name] - closed[name] for name in closed]
            total_flows = len(closed)
            total_invoices = total_flows * args.invoices
            print(f"partners={args.partners} flows/partner={args.flows} invoices/flow={args.invoices} "
                  f"interface={args.interface} workers={args.workers} "
                  f"validation_processes={args.validation_processes or os.cpu_count()} cpus={os.cpu_count()}")
            print(f"upload close -> report in /out: median {statistics.median(latencies):.3f} s, "
                  f"p95 {percentile(latencies, 0.95):.3f} s, max {max(latencies):.3f} s (poll {args.poll} s)")
            print(f"throughput: {total_flows / elapsed:.2f} flows/s, {total_invoices / elapsed:.1f} invoices/s "
                  f"({total_flows} flows, {total_invoices} invoices in {elapsed:.2f} s)")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
