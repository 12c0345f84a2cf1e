"""`export-pfx`: PKCS#12 files (certificate, key, CA chain) for Windows, one password for all,
in worker processes for many files (PBKDF2 makes each one cost about 10 ms).
"""

from __future__ import annotations

import argparse
import fnmatch
from typing import Any

from . import build, parallel
from .entries import SERVER_CA
from .files import PRIVATE_FILE
from .inputs import MIN_PFX_PASSWORD, read_password
from .progress import Progress, note, out
from .store import Batch, Pki, PkiError

PFX_PARALLEL_FROM, PFX_CHUNK = 8, 4  # export-pfx: worker processes from 8 files, 4 per unit


def _pfx_names(args: argparse.Namespace, pki: Pki) -> list[str]:
    """Names to export: each argument a name, or a pattern with * or ? (never part of a name)
    that selects the certificates with a key here that are not revoked."""
    names: list[str] = []
    skipped = {"csr": 0, "revoked": 0}
    for text in args.names:
        if "*" in text or "?" in text:
            matched = [n for n in sorted(pki.certificates) if fnmatch.fnmatchcase(n, text)]
            if not matched:
                raise PkiError(f"pattern {text!r} matches no name in {pki.index_path}")
            for name in matched:
                item = pki.certificates[name]
                if item.get("source") == "csr":
                    skipped["csr"] += 1
                elif item["status"] == "revoked":
                    skipped["revoked"] += 1
                elif name not in names:
                    names.append(name)
            continue
        item = pki.entry(text)
        if item.get("source") == "csr":
            raise PkiError(f"no private key for {text!r} ({pki.private / (text + '.key')} missing: signed from a CSR, the key stays on the device)")
        if item["status"] == "revoked":
            note(f"warning: {text} is revoked")
        if text not in names:
            names.append(text)
    if not names:
        raise PkiError(f"nothing to export: the patterns matched only certificates signed from CSRs ({skipped['csr']}) or revoked ({skipped['revoked']})")
    if skipped["csr"] or skipped["revoked"]:
        note(f"note: patterns skipped {skipped['csr']} certificate(s) signed from CSRs (no key here) and {skipped['revoked']} revoked")
    for name in names:
        key_path = pki.private / f"{name}.key"
        if not key_path.exists():
            raise PkiError(f"no private key for {name!r} ({key_path} missing)")
        pki.check_file_serial(name, pki.certificates[name])  # a hand-edited index.json: export nothing
    return names


def cmd_export_pfx(args: argparse.Namespace, pki: Pki) -> int:
    pki.require_ca()
    names = _pfx_names(args, pki)
    chain = pki.chain()
    # A beacon certificate the server CA signed carries that CA, not the device chain.
    server_chain = [pki.load_cert(pki.server_ca_pem)] if any(pki.certificates[n].get("ca") == SERVER_CA for n in names) else []
    password = read_password(minimum=0 if args.allow_short_password else MIN_PFX_PASSWORD)
    pki.pfx.mkdir(mode=0o700, exist_ok=True)
    batch = Batch(pki.root)

    def export(span: Any) -> int:  # a range of positions  # PBKDF2 makes each file cost ~10 ms: worth worker processes
        written = 0
        for name in names[span.start:span.stop]:
            if parallel.stop_requested():  # SIGINT/SIGTERM: no other file starts
                break
            cert = pki.load_cert(pki.issued / f"{name}.pem")
            key = pki.load_key(pki.private / f"{name}.key")
            cas = server_chain if pki.certificates[name].get("ca") == SERVER_CA else chain
            batch.write(pki.pfx / f"{name}.pfx", build.pkcs12_bytes(name, key, cert, cas, password, args.legacy), PRIVATE_FILE)
            written += 1
        return written

    try:
        with parallel.Workers(export, parallel.choose_jobs(args.jobs, len(names), PFX_PARALLEL_FROM)) as workers, Progress("exported", len(names)) as progress:

            def exported(count: int) -> None:
                batch.pending += count
                progress.advance(count)

            workers.run(parallel.spans(len(names), PFX_CHUNK), exported)
    finally:
        batch.sync()
    scheme = "legacy 3DES/SHA-1" if args.legacy else "AES-256/SHA-256"
    if len(names) == 1:
        out(f"wrote {pki.pfx / (names[0] + '.pfx')} ({scheme}; certificate, key and {len(server_chain if pki.certificates[names[0]].get('ca') == SERVER_CA else chain)} CA certificate(s))")
    else:
        out(f"wrote {len(names)} PFX files ({names[0]}.pfx .. {names[-1]}.pfx) into {pki.pfx}/ ({scheme}; each with certificate, key and {len(chain)} CA certificate(s))")
    return 0
