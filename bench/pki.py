"""Benchmark of `python -m scripts.pki` for bulk work, side by side with other ways to do it.

    python -m bench.pki [--runs N] [--write BENCHMARKS.md] [--workdir DIR] [--keep]

In one run (about a minute; easy-rsa dominates):

- issue 1,000 client certificates: our CLI (`issue-client --count 1000`, a subprocess, files,
  index and sync included) against
  - easy-rsa `build-client-full NAME nopass` in a loop, on a sample (default 50; it manages
    about 8 a second), compared per certificate;
  - a plain `openssl` loop (genpkey + req + x509 per certificate) on a sample;
  - a bare in-process cryptography loop: keygen P-256, the same extensions, sign, PEM of key
    and certificate, no files (goal: our CLI within 3x of it);
  - the same bare loop writing the two files per certificate (information: the share of the
    filesystem, which varies a lot between machines);
- sign 1,000 CSRs (`sign-csr DIR`) against a bare loop (load, verify, sign, PEM);
- a CRL with 100,000 revoked entries (`crl`, index.json with 100,000 revoked entries made for
  the purpose) (goal: <= 1 s, the whole command);
- export 100 PFX files (`export-pfx NAME...`) against a bare pkcs12 loop with the same
  encryption.

Our CLI's times are medians of --runs runs interleaved with the bare loops; easy-rsa and
openssl are sampled once. The subprocesses get PYTHONPYCACHEPREFIX in the work directory (and
not PYTHONDONTWRITEBYTECODE), so their modules are compiled once, as in a normal install. The
work directory is new, made in --workdir or the system's temporary directory (TMPDIR), and the
rows name its filesystem: on a slow disk, creating the 2,000 files is most of the cost (the
"bare loop + files" row shows how much). Goals are printed met/MISSED; --write appends the rows
to the "## PKI" table of the file (created when missing). Exit 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bench.plan import machine
from bench.results import append_rows
from scripts.pki import files, store

ROOT = Path(__file__).resolve().parent.parent
CRL_URL = "http://crl.example.com/pki/devices.crl"
PFX_SECRET = secrets.token_urlsafe(16)  # made per run; exported PFX files are thrown away
EASYRSA_CANDIDATES = ("easyrsa", "/usr/share/easy-rsa/easyrsa")
SECTION = "## PKI"
TABLE_HEAD = (
    "| date | machine | what | ours (median) | compared with | ratio | goal |\n"
    "|---|---|---|---|---|---|---|\n"
)


@dataclass
class Row:
    what: str
    ours: str
    other: str
    ratio: str
    goal: str  # "met (...)", "MISSED (...)" or "-"


# ---------------------------------------------------------------------------------------------
# Helpers


class Bench:
    def __init__(self, workdir: Path, runs: int):
        self.work = workdir
        self.runs = runs
        self.env = dict(os.environ)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
        self.env["PKI_PASSWORD"] = PFX_SECRET
        self.env["PYTHONPATH"] = str(ROOT) + os.pathsep + self.env.get("PYTHONPATH", "")

    def pki(self, directory: Path, *args: str) -> float:
        """Seconds for one `python -m scripts.pki --dir DIR ARGS` (stdout/stderr discarded)."""
        settle()
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "scripts.pki", "--dir", str(directory), *args], cwd=ROOT, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"bench: `pki {' '.join(args[:3])} ...` failed: {result.stderr.strip()}")
        return seconds

    def fresh_copy(self, template: Path, name: str) -> Path:
        target = self.work / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(template, target)
        return target


def filesystem(path: Path) -> str:
    """Type of the filesystem holding ``path`` (longest mount point of /proc/mounts), e.g. ext4."""
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and str(path).startswith(fields[1].rstrip("/") + "/") and len(fields[1]) > len(best):
                best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def settle() -> None:
    """Flush what earlier steps left dirty (not timed), so that no measurement pays for the
    previous one's files (our CLI syncs the filesystem once: it would)."""
    os.sync()


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def timed(func: Callable[[], object]) -> float:
    settle()
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 0.995 else f"{value * 1000:.0f} ms"


def per_item(total: float, count: int) -> str:
    return f"{total / count * 1000:.2f} ms each"


def goal(ok: bool, text: str) -> str:
    return f"{'met' if ok else 'MISSED'} (goal {text})"


# ---------------------------------------------------------------------------------------------
# Bare in-process loops (what cryptography alone costs)


class Bare:
    """The same certificate content as `issue-client` (profile of scripts/pki/build.py), written
    with cryptography's plain fluent API."""

    def __init__(self, ca_dir: Path):
        self.ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
        self.ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
        ski = self.ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self.aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def certificate(self, cn: str, public_key: ec.EllipticCurvePublicKey) -> x509.Certificate:
        now = dt.datetime.now(dt.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.ca.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self.aki, critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint([x509.UniformResourceIdentifier(CRL_URL)], None, None, None)]), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )

    def issue(self, count: int, directory: Path | None = None) -> None:
        """keygen + build + sign + PEM of key and certificate; with ``directory`` also the two
        files (temporary file + rename, key 0600) as the CLI writes them, and one sync at the
        end (the CLI makes them durable before its index names them)."""
        for number in range(count):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = self.certificate(f"dev-{number:04d}", key.public_key())
            key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            cert_bytes = cert.public_bytes(serialization.Encoding.PEM)
            if directory is not None:
                for folder, name, data, mode in (("private", f"dev-{number:04d}.key", key_bytes, 0o600), ("issued", f"dev-{number:04d}.pem", cert_bytes, 0o644)):
                    tmp = directory / folder / f".{name}.tmp"
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                    os.write(fd, data)
                    os.close(fd)
                    os.replace(tmp, directory / folder / name)
        if directory is not None:
            files.sync_filesystem(directory)

    def sign_csrs(self, csr_dir: Path) -> None:
        for path in sorted(csr_dir.iterdir()):
            csr = x509.load_pem_x509_csr(path.read_bytes())
            assert csr.is_signature_valid
            self.certificate(path.stem, csr.public_key()).public_bytes(serialization.Encoding.PEM)

    def pfx(self, pki_dir: Path, names: list[str]) -> None:
        chain = [self.ca]
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(50000)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(PFX_SECRET.encode())
        )
        for name in names:
            cert = x509.load_pem_x509_certificate((pki_dir / "issued" / f"{name}.pem").read_bytes())
            key = serialization.load_pem_private_key((pki_dir / "private" / f"{name}.key").read_bytes(), None)
            pkcs12.serialize_key_and_certificates(name.encode(), key, cert, chain, encryption)


# ---------------------------------------------------------------------------------------------
# Other tools, sampled


def easyrsa_per_cert(work: Path, sample: int) -> float | None:
    """Seconds per `easyrsa build-client-full NAME nopass` (EC P-256, batch mode)."""
    tool = next((found for c in EASYRSA_CANDIDATES if (found := shutil.which(c))), None)
    if tool is None:
        note("easy-rsa not found (apt-get install easy-rsa): skipped")
        return None
    env = dict(os.environ, EASYRSA_BATCH="1", EASYRSA_PKI=str(work / "easyrsa"), EASYRSA_ALGO="ec", EASYRSA_CURVE="prime256v1")
    shutil.rmtree(work / "easyrsa", ignore_errors=True)

    def run(*args: str, **extra: str) -> None:
        result = subprocess.run([tool, *args], cwd=work, env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise SystemExit(f"bench: easyrsa {' '.join(args)} failed: {result.stderr.strip()[-300:]}")

    run("init-pki")
    run("build-ca", "nopass", EASYRSA_REQ_CN="Bench easy-rsa CA")
    note(f"easy-rsa: {sample} x build-client-full ...")
    start = time.perf_counter()
    for number in range(sample):
        run("build-client-full", f"dev-{number:04d}", "nopass")
    return (time.perf_counter() - start) / sample


def openssl_per_cert(work: Path, ca_dir: Path, sample: int) -> float | None:
    """Seconds per certificate with three openssl processes: genpkey, req, x509 -req."""
    tool = shutil.which("openssl")
    if tool is None:
        note("openssl not found: skipped")
        return None
    out = work / "openssl"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    ext = out / "client.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
        f"subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\ncrlDistributionPoints=URI:{CRL_URL}\n"
    )

    def run(*args: str) -> None:
        subprocess.run([tool, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    start = time.perf_counter()
    for number in range(sample):
        key, req, crt = out / f"d{number}.key", out / f"d{number}.csr", out / f"d{number}.pem"
        run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
        run("req", "-new", "-key", str(key), "-subj", f"/CN=dev-{number:04d}", "-out", str(req))
        run("x509", "-req", "-in", str(req), "-CA", str(ca_dir / "ca.pem"), "-CAkey", str(ca_dir / "ca.key"),
            "-set_serial", f"0x{secrets.token_hex(16)}", "-days", "365", "-sha256", "-extfile", str(ext), "-out", str(crt))
    return (time.perf_counter() - start) / sample


# ---------------------------------------------------------------------------------------------
# Inputs


def make_csrs(directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"csr-{number:04d}")])).sign(key, hashes.SHA256())
        (directory / f"csr-{number:04d}.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))


def add_revoked(pki_dir: Path, count: int) -> None:
    """index.json with ``count`` revoked client entries (random serials, spread dates, all
    reasons): what `crl` reads, without issuing 100,000 certificates first."""
    index = json.loads((pki_dir / "index.json").read_text())
    reasons = ["unspecified", "keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged"]
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for number in range(count):
        serial = secrets.randbits(158) | (1 << 120)
        revoked = start + dt.timedelta(seconds=number * 97)
        index["certificates"][f"old-{number:06d}"] = {
            "kind": "client", "source": "key", "serial": format(serial, "x"), "subject": f"CN=old-{number:06d}",
            "notBefore": "2026-01-01T00:00:00Z", "notAfter": "2027-01-01T00:00:00Z", "sha1": secrets.token_hex(20).upper(),
            "status": "revoked", "revokedAt": revoked.strftime("%Y-%m-%dT%H:%M:%SZ"), "reason": reasons[number % len(reasons)],
        }
    (pki_dir / "index.json").write_text(store.dumps_index(index) + "\n")


# ---------------------------------------------------------------------------------------------
# The run


def run(args: argparse.Namespace, work: Path) -> list[Row]:
    bench = Bench(work, args.runs)
    template = work / "template"
    bench.pki(template, "init-ca", "--cn", "Bench Devices CA", "--crl-url", CRL_URL)  # also compiles the modules once
    bare = Bare(template)
    rows: list[Row] = []
    count = args.count

    # 1. issue-client --count N
    note(f"issue-client --count {count}: {args.runs} runs, interleaved with the bare loops ...")
    ours, floor, storage = [], [], []
    for number in range(args.runs):
        directory = bench.fresh_copy(template, f"issue-{number}")
        ours.append(bench.pki(directory, "issue-client", "--count", str(count), "--prefix", "dev-"))
        floor.append(timed(lambda: bare.issue(count)))
        files = work / f"bare-files-{number}"
        (files / "private").mkdir(parents=True, mode=0o700)
        (files / "issued").mkdir()
        storage.append(timed(lambda: bare.issue(count, files)))
        shutil.rmtree(files)
    issue_dir = work / f"issue-{args.runs - 1}"
    ours_s, floor_s, storage_s = statistics.median(ours), statistics.median(floor), statistics.median(storage)
    ours_each = ours_s / count
    easy = easyrsa_per_cert(work, args.easyrsa_sample)
    if easy is not None:
        speedup = easy / ours_each
        rows.append(Row(f"issue {count} client certs vs easy-rsa build-client-full (EC P-256)", f"{seconds(ours_s)} ({per_item(ours_s, count)})",
                        f"easy-rsa {per_item(easy * args.easyrsa_sample, args.easyrsa_sample)} ({args.easyrsa_sample} sampled; ~{seconds(easy * count)} for {count})",
                        f"{speedup:.0f}x faster", goal(speedup >= 100, ">= 100x")))
    else:
        rows.append(Row(f"issue {count} client certs vs easy-rsa", seconds(ours_s), "easy-rsa not installed", "-", "MISSED (not measured; apt-get install easy-rsa)"))
    rows.append(Row(f"issue {count} client certs vs bare cryptography loop (no files)", seconds(ours_s), f"bare loop {seconds(floor_s)}",
                    f"{ours_s / floor_s:.2f}x", goal(ours_s / floor_s <= 3.0, "<= 3x")))
    rows.append(Row(f"issue {count} client certs vs bare loop + the same {2 * count} file writes and one sync", seconds(ours_s), f"bare loop + files {seconds(storage_s)}",
                    f"{ours_s / storage_s:.2f}x", "-"))
    ossl = openssl_per_cert(work, template, args.openssl_sample)
    if ossl is not None:
        rows.append(Row(f"issue {count} client certs vs openssl genpkey+req+x509 loop", f"{per_item(ours_s, count)}",
                        f"openssl {per_item(ossl * args.openssl_sample, args.openssl_sample)} ({args.openssl_sample} sampled)", f"{ossl / ours_each:.0f}x faster", "-"))

    # 2. sign-csr
    note(f"sign-csr: {args.csrs} CSRs ...")
    csr_dir = work / "csrs"
    make_csrs(csr_dir, args.csrs)
    ours, floor = [], []
    for number in range(args.runs):
        directory = bench.fresh_copy(template, f"csr-{number}")
        ours.append(bench.pki(directory, "sign-csr", str(csr_dir)))
        floor.append(timed(lambda: bare.sign_csrs(csr_dir)))
        shutil.rmtree(directory)
    ours_s, floor_s = statistics.median(ours), statistics.median(floor)
    rows.append(Row(f"sign {args.csrs} CSRs vs bare loop (load, verify, sign, PEM; no files)", f"{seconds(ours_s)} ({per_item(ours_s, args.csrs)})",
                    f"bare loop {seconds(floor_s)}", f"{ours_s / floor_s:.2f}x", "-"))

    # 3. CRL with N revoked entries
    note(f"crl: index with {args.crl_entries} revoked entries ...")
    crl_dir = bench.fresh_copy(template, "crl")
    add_revoked(crl_dir, args.crl_entries)
    ours = [bench.pki(crl_dir, "crl") for _ in range(args.runs)]
    size = (crl_dir / "crl.der").stat().st_size
    ours_s = statistics.median(ours)
    rows.append(Row(f"crl with {args.crl_entries} revoked entries (whole command: reads index.json, signs, writes PEM+DER)",
                    seconds(ours_s), f"crl.der {size / 1e6:.1f} MB", "-", goal(ours_s <= 1.0, "<= 1 s")))

    # 4. export-pfx
    names = [f"dev-{number:04d}" for number in range(1, args.pfx + 1)]
    note(f"export-pfx: {args.pfx} files ...")
    ours, floor = [], []
    for _ in range(args.runs):
        shutil.rmtree(issue_dir / "pfx", ignore_errors=True)
        ours.append(bench.pki(issue_dir, "export-pfx", *names))
        floor.append(timed(lambda: bare.pfx(issue_dir, names)))
    ours_s, floor_s = statistics.median(ours), statistics.median(floor)
    rows.append(Row(f"export {args.pfx} PFX (AES-256, PBKDF2 50,000 rounds) vs bare pkcs12 loop", f"{seconds(ours_s)} ({per_item(ours_s, args.pfx)})",
                    f"bare loop {seconds(floor_s)}", f"{ours_s / floor_s:.2f}x", "-"))
    return rows


def table_lines(rows: list[Row], when: str, host: str) -> list[str]:
    return [f"| {when} | {host} | {r.what} | {r.ours} | {r.other} | {r.ratio} | {r.goal} |" for r in rows]


def write_rows(path: Path, lines: list[str]) -> None:
    """Append to the table under {SECTION} (made at the end of the file when missing)."""
    append_rows(path, SECTION, lines, intro="`python -m bench.pki`: our CLI (a subprocess, files and index included) against easy-rsa, openssl and bare in-process cryptography loops, measured in the same run.", table_head=TABLE_HEAD)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pki", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of our CLI per measure (median; default 5)")
    parser.add_argument("--count", type=int, default=1000, help="client certificates to issue (default 1000)")
    parser.add_argument("--easyrsa-sample", type=int, default=50, help="easy-rsa certificates measured (default 50)")
    parser.add_argument("--openssl-sample", type=int, default=50, help="openssl-loop certificates measured (default 50)")
    parser.add_argument("--csrs", type=int, default=1000)
    parser.add_argument("--crl-entries", type=int, default=100_000)
    parser.add_argument("--pfx", type=int, default=100)
    parser.add_argument("--workdir", help="directory in which a new work directory is made (default: the system's temporary directory); its filesystem matters")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--write", metavar="FILE", help="append the rows to the '## PKI' table of this markdown file")
    args = parser.parse_args(argv)
    if args.pfx > args.count:
        parser.error("--pfx cannot exceed --count (the exported certificates are the issued ones)")
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-pki-", dir=args.workdir)).resolve()  # always a new directory of our own
    note(f"work directory: {work}")
    started = time.perf_counter()
    try:
        rows = run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    when, host = dt.date.today().isoformat(), f"{machine()}; PKI on {filesystem(work)}"
    lines = table_lines(rows, when, host)
    print(TABLE_HEAD + "\n".join(lines))
    missed = [r for r in rows if r.goal.startswith("MISSED")]
    print(f"\n{len(rows)} rows, goals: {sum(r.goal.startswith('met') for r in rows)} met, {len(missed)} MISSED; {time.perf_counter() - started:.0f} s")
    if args.write:
        write_rows(ROOT / args.write, lines)
        print(f"appended {len(lines)} rows to {args.write}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
