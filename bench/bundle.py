"""Benchmark of `python -m scripts.pki bundle` for bulk onboarding: N device kits (default 10,000)
against the bare cryptography loop with the same PFX encryption, and an interrupted run resumed.

    python -m bench.bundle [--count N] [--jobs J] [--write BENCHMARKS.md] [--workdir DIR] [--keep]

- ours: `bundle --all-clients --beacon-host ... --jobs J` as a subprocess (interpreter start,
  reading 2N certificate and key files, J worker processes, a Windows kit of kit format 2 per
  device (the default --platform windows: 9 files, two ECDSA signatures) and a rename, the
  passwords.csv write and the final sync included), progress on stderr;
- bare loop, 1 process: per device, load the certificate and key files and
  pkcs12.serialize_key_and_certificates with the same parameters (build.pfx_scheme(False)), no
  files written: what the PFX alone costs;
- bare loop, J processes (fork, chunks of 64): the floor for J cores;
- resume: the same command interrupted with SIGINT once about a third of the kits exist, then
  run again; counted: complete kits, duplicates, temporary directories left, passwords recorded;
  a sample of kits is then proven with `verify-bundle` against a stack file made for the purpose.

PBKDF2 dominates: two derivations of 50,000 rounds per PFX (key bag, certificate bag) and the
MAC's 2,048 iterations, about 10 ms of one CPU. Wall clock and CPU time (user + sys of the command and its workers,
RUSAGE_CHILDREN; of the bare loops likewise) are both reported: on a shared machine the wall
clock follows the other load, the CPU time is this code's own cost, and the goal (<= 1.5x the
bare loop) is on it. The rows go under "## Device kits" in BENCHMARKS.md with --write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from bench.pki import ROOT, filesystem, note, seconds, settle
from bench.plan import machine
from bench.results import append_rows
from scripts.pki import build

SECTION = "## Device kits"
TABLE_HEAD = "| date | machine | what | ours | compared with | ratio | goal |\n|---|---|---|---|---|---|---|\n"
BEACON = "beacon1.bench.example"
BEACON_DOMAIN = "bench.example"  # the server CA's name constraint: kits install only a constrained root
_PKI_DIR: Path | None = None  # for the forked bare-loop workers


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PKI_PASSWORD", None)  # random per-device passwords, as a bulk rollout would use
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _default_sigint() -> None:
    """In the child: SIGINT as Python expects it. A background job of a non-interactive shell
    starts with SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(work: Path, pki_dir: Path, *args: str, quiet: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its workers)."""
    settle()
    cpu, start = children_cpu(), time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "scripts.pki", "--dir", str(pki_dir), *args], cwd=ROOT, env=_env(work),
                            stdout=subprocess.DEVNULL if quiet else subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None, text=True)
    wall = time.perf_counter() - start
    if result.returncode not in (0,):
        raise SystemExit(f"bench: `pki {' '.join(args[:2])} ...` exited {result.returncode}")
    return wall, children_cpu() - cpu


def _encryption() -> Any:
    return (serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(build.PFX_BAG_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256()).build(b"bench-password-0123456789"))


def bare(names: list[str]) -> int:
    """Load certificate and key, serialize the PFX (leaf and key, as the kit's), no files."""
    assert _PKI_DIR is not None
    encryption = _encryption()
    for name in names:
        cert = x509.load_pem_x509_certificate((_PKI_DIR / "issued" / f"{name}.pem").read_bytes())
        key = serialization.load_pem_private_key((_PKI_DIR / "private" / f"{name}.key").read_bytes(), None)
        pkcs12.serialize_key_and_certificates(name.encode(), key, cert, None, encryption)  # type: ignore[arg-type]
    return len(names)


def bare_parallel(names: list[str], jobs: int) -> None:
    chunks = [names[i:i + 64] for i in range(0, len(names), 64)]
    pool = multiprocessing.get_context("fork").Pool(jobs)
    for _ in pool.imap_unordered(bare, chunks):
        pass
    pool.close()
    pool.join()  # reaped: their CPU time is in RUSAGE_CHILDREN


def kits_in(bundles: Path) -> tuple[int, int]:
    """(complete kits, temporary directories) in a bundles directory."""
    if not bundles.is_dir():
        return 0, 0
    entries = list(bundles.iterdir())
    return sum(1 for p in entries if not p.name.startswith(".")), sum(1 for p in entries if p.name.startswith("."))


def interrupted_then_resumed(work: Path, pki_dir: Path, count: int, jobs: int) -> dict[str, Any]:
    args = [sys.executable, "-m", "scripts.pki", "--dir", str(pki_dir), "bundle", "--all-clients", "--beacon-host", BEACON, "--jobs", str(jobs)]
    settle()
    process = subprocess.Popen(args, cwd=ROOT, env=_env(work), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    bundles = pki_dir / "bundles"
    while kits_in(bundles)[0] < count // 3 and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate()
    at_stop, temporary = kits_in(bundles)
    note(f"interrupted: exit {process.returncode}, {at_stop} complete kits, {temporary} temporary directories; {err.strip().splitlines()[0] if err.strip() else ''}")
    resumed, _ = cli(work, pki_dir, "bundle", "--all-clients", "--beacon-host", BEACON, "--jobs", str(jobs))
    complete, temporary = kits_in(bundles)
    devices = [json.loads((p / "manifest.json").read_text())["device"] for p in bundles.iterdir()]
    rows = (pki_dir / "passwords.csv").read_text().splitlines()[1:]
    return {"exit": process.returncode, "atStop": at_stop, "resumed": resumed, "complete": complete, "temporary": temporary,
            "duplicates": len(devices) - len(set(devices)), "passwords": len(rows)}


def verify_sample(work: Path, pki_dir: Path, sample: int) -> tuple[float, float]:
    (work / "Pulumi.yaml").write_text("name: flexnet-beacon\n")
    stack = work / "Pulumi.bench.yaml"
    stack.write_text(f"config:\n  flexnet-beacon:beaconHostnames: ['{BEACON}']\n  flexnet-beacon:clientCaCertificates: ['{pki_dir.name}/ca.pem']\n")
    kits = sorted((pki_dir / "bundles").iterdir())[:: max(1, len(list((pki_dir / "bundles").iterdir())) // sample)][:sample]
    return cli(work, pki_dir, "verify-bundle", *map(str, kits), "--stack-config", str(stack), quiet=True)


def run(args: argparse.Namespace, work: Path) -> list[str]:
    global _PKI_DIR
    pki_dir = work / "pki"
    note(f"issuing {args.count} device certificates (not measured) ...")
    cli(work, pki_dir, "init-ca", "--cn", "Bench Devices CA", "--crl-url", "http://crl.bench.example/devices.crl", "--server-domain", BEACON_DOMAIN, quiet=True)
    cli(work, pki_dir, "issue-server", "--dns", BEACON, quiet=True)
    cli(work, pki_dir, "issue-client", "--count", str(args.count), "--prefix", "dev-", quiet=True)
    index = json.loads((pki_dir / "index.json").read_text())
    names = sorted(n for n, item in index["certificates"].items() if item["kind"] == "client")
    assert len(names) == args.count
    _PKI_DIR = pki_dir

    note(f"ours: bundle --all-clients, {args.jobs} workers ...")
    ours, ours_cpu = cli(work, pki_dir, "bundle", "--all-clients", "--beacon-host", BEACON, "--jobs", str(args.jobs))
    size = sum(f.stat().st_size for f in (pki_dir / "bundles").rglob("*") if f.is_file())
    per_kit = sum(1 for f in next((pki_dir / "bundles").iterdir()).rglob("*") if f.is_file())
    note(f"ours: {ours:.1f} s, CPU {ours_cpu:.1f} s; bare loop, 1 process ...")
    settle()
    start, cpu = time.perf_counter(), time.process_time()
    bare(names)
    single, single_cpu = time.perf_counter() - start, time.process_time() - cpu
    note(f"bare loop 1 process: {single:.1f} s, CPU {single_cpu:.1f} s; bare loop, {args.jobs} processes ...")
    settle()
    start, cpu = time.perf_counter(), children_cpu()
    bare_parallel(names, args.jobs)
    floor, floor_cpu = time.perf_counter() - start, children_cpu() - cpu
    note(f"bare loop {args.jobs} processes: {floor:.1f} s, CPU {floor_cpu:.1f} s; verify-bundle on a sample of {args.verify_sample} ...")
    verified, _ = verify_sample(work, pki_dir, args.verify_sample)

    note("resume: interrupting a fresh run at about a third, then running it again ...")
    shutil.rmtree(pki_dir / "bundles")
    (pki_dir / "passwords.csv").unlink()
    resume = interrupted_then_resumed(work, pki_dir, args.count, args.jobs)

    n, j = args.count, args.jobs
    cpu_ratio = ours_cpu / single_cpu
    resumed_ok = resume["exit"] == 130 and 0 < resume["atStop"] < n and resume["complete"] == n and not resume["duplicates"] and not resume["temporary"] and resume["passwords"] == n
    rows = [
        (f"bundle {n} kits, {j} workers: wall clock (PFX {build.pfx_scheme(False)}; kit format 2, Windows: {per_kit} files, 2 signatures + rename per kit, one sync; {size / 1e6:.0f} MB)",
         f"{seconds(ours)} ({ours / n * 1000:.2f} ms per kit)", f"bare pkcs12 loop, 1 process, no files: {seconds(single)}; on {j} processes: {seconds(floor)}",
         f"{ours / single:.2f}x; {ours / floor:.2f}x", "-"),
        (f"bundle {n} kits, {j} workers: CPU time (user+sys of the command and its workers)", f"{seconds(ours_cpu)} ({ours_cpu / n * 1000:.2f} ms per kit)",
         f"bare pkcs12 loop, 1 process: {seconds(single_cpu)}; on {j} processes: {seconds(floor_cpu)}", f"{cpu_ratio:.2f}x",
         f"{'met' if cpu_ratio <= 1.5 else 'MISSED'} (goal <= 1.5x: files, manifest and checks cost at most half the PFX)"),
        (f"bundle {n} kits, SIGINT at {resume['atStop']} complete kits, then the same command again",
         f"rerun {seconds(resume['resumed'])}; {resume['complete']} kits, {resume['duplicates']} duplicates, {resume['temporary']} temporary dirs left, {resume['passwords']} passwords",
         f"first run exit {resume['exit']}", "-",
         f"{'met' if resumed_ok else 'MISSED'} (exit 130, then all {n}, none twice, none half-written)"),
        (f"verify-bundle {args.verify_sample} kits (sampled)", f"{seconds(verified)} ({verified / args.verify_sample * 1000:.1f} ms per kit)", "-", "-", "-"),
    ]
    return [" | ".join(r) for r in rows]


def write_rows(path: Path, lines: list[str]) -> None:
    """Append to the table under {SECTION} (made at the end of the file when missing)."""
    append_rows(path, SECTION, lines, intro=("`python -m bench.bundle`: `pki bundle` of N device kits against the bare cryptography loop with the same PFX "
             "encryption, and an interrupted run resumed (see the module docstring)."), table_head=TABLE_HEAD)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="device kits (default 10000)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of ours and of the parallel bare loop (default 2)")
    parser.add_argument("--verify-sample", type=int, default=100, help="kits verify-bundle proves afterwards (default 100)")
    parser.add_argument("--workdir", help="directory in which a new work directory is made (default: the system's temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--write", metavar="FILE", help=f"append the rows under '{SECTION}' of this markdown file")
    args = parser.parse_args(argv)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-bundle-", dir=args.workdir)).resolve()
    note(f"work directory: {work}")
    started = time.perf_counter()
    try:
        rows = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[1]
    when, host = dt.date.today().isoformat(), f"{machine()}; kits on {filesystem(work)}; load average {load:.1f} at the end (other sessions)"
    lines = [f"| {when} | {host} | {row} |" for row in rows]
    print(TABLE_HEAD + "\n".join(lines))
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.write:
        write_rows(ROOT / args.write, lines)
        print(f"appended {len(lines)} rows to {args.write}")
    return 1 if any("MISSED" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
