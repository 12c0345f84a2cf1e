"""Command line of `python -m scripts.pki` (see docs/pki.md): the parser and the dispatch.

The verbs live by group: issue.py (init-ca, issue-server, issue-client, sign-csr), server_ca.py
(init-server-ca), revocation.py (revoke, crl), renew.py (renew), pfx.py (export-pfx), check.py (inspect, check, list), bundle.py
(bundle) and verify_bundle.py (verify-bundle, exit 1 when a kit fails); what they take in is
checked in inputs.py, what they print goes through progress.py.

Exit codes: 0 done (check: accept), 1 check: reject, or crl --publish could not upload (the CRL
was written), 2 bad input or state (one line on stderr), 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM, handled like Ctrl-C).
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
from typing import Any, Callable, Sequence

from scripts.cli_args import undecodable_argument

from . import build
from .bundle import add_bundle_arguments, cmd_bundle
from .check import cmd_check, cmd_inspect, cmd_list
from .inputs import DEFAULT_DAYS, MAX_COUNT, MIN_PFX_PASSWORD, PASSWORD_ENV, PROG, non_negative_int, positive_days
from .issue import cmd_init_ca, cmd_issue_client, cmd_issue_server, cmd_sign_csr
from .keycrypt import CA_PASSWORD_ENV, MIN_CA_PASSWORD
from .pfx import cmd_export_pfx
from .renew import add_renew_arguments, cmd_renew
from .revocation import cmd_crl, cmd_revoke
from .server_ca import cmd_init_server_ca
from .store import Pki, PkiError
from .verify_bundle import add_verify_arguments, cmd_verify_bundle


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Offline PKI for FlexNet beacons and device certificates (docs/pki.md).")
    parser.add_argument("--dir", default="pki", help="PKI directory (default ./pki)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=argparse.SUPPRESS, help="PKI directory (default ./pki)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, handler: Callable[[argparse.Namespace, Pki], int], help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    p = verb("init-ca", cmd_init_ca, "create the root CA (and with --intermediate an issuing intermediate)")
    p.add_argument("--cn", required=True, help="common name of the issuing CA (the IIS Issuer CN rule)")
    p.add_argument("--o", help="organisation of the CA subject")
    p.add_argument("--ou", help="organisational unit of the CA subject")
    p.add_argument("--c", help="two-letter country of the CA subject")
    p.add_argument("--intermediate", action="store_true", help="root + issuing intermediate (the root signs only the intermediate and its CRL)")
    p.add_argument("--root-cn", help="root common name with --intermediate (default '<cn> Root')")
    p.add_argument("--crl-url", action="append", default=[], metavar="URL", help="CDP of every issued certificate (repeatable)")
    p.add_argument("--root-crl-url", action="append", default=[], metavar="URL", help="CDP of the intermediate (default: root-<file> next to each --crl-url)")
    p.add_argument("--aia-url", action="append", default=[], metavar="URL", help="AIA caIssuers URL of issued certificates")
    p.add_argument("--root-aia-url", action="append", default=[], metavar="URL", help="AIA caIssuers URL of the intermediate")
    p.add_argument("--key", choices=build.KEY_TYPES, default="ec", help="key type (default ec: P-256)")
    p.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["ca"], help="root validity (default 3650)")
    p.add_argument("--intermediate-days", type=positive_days, default=DEFAULT_DAYS["intermediate"], help="intermediate validity (default 1825)")
    _server_ca_arguments(p, "--server-cn", "--server-crl-url")
    p.add_argument("--encrypt-key", action="store_true", help=_ENCRYPT_HELP.format(keys="ca.key (root.key, server-ca.key)"))

    p = verb("init-server-ca", cmd_init_server_ca, "add the name-constrained server CA (signs the beacons' certificates; the only root devices install) to an existing PKI")
    _server_ca_arguments(p, "--cn", "--crl-url", required=True)
    p.add_argument("--key", choices=build.KEY_TYPES, help="key type (default: the device CA's)")
    p.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["ca"], help="validity (default 3650)")
    p.add_argument("--encrypt-key", action="store_true", help=_ENCRYPT_HELP.format(keys="private/server-ca.key") + " (implied when ca.key is encrypted)")

    p = verb("issue-server", cmd_issue_server, "issue a beacon (server) certificate: EKU serverAuth + clientAuth")
    p.add_argument("--dns", action="append", default=[], metavar="NAME", help="DNS name (repeatable; the first is the CN)")
    p.add_argument("--ip", action="append", default=[], metavar="ADDR", help="IP address SAN (repeatable)")
    p.add_argument("--name", help="file name (default: the first --dns)")
    p.add_argument("--o")
    p.add_argument("--ou")
    p.add_argument("--key", choices=build.KEY_TYPES, help="key type (default: the CA's)")
    p.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["server"], help="validity (default 397)")

    p = verb("issue-client", cmd_issue_client, "issue device (client) certificates: EKU clientAuth only")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--cn", help="device name (subject CN and file name)")
    source.add_argument("--count", type=int, help=f"bulk: this many certificates named PREFIX0001... (1 to {MAX_COUNT})")
    source.add_argument("--from-csv", metavar="FILE", help="bulk: CSV with columns cn,o,ou")
    p.add_argument("--prefix", help="name prefix with --count")
    p.add_argument("--start", type=non_negative_int, help="first number with --count (default 1)")
    p.add_argument("--o", help="organisation (CSV rows may override)")
    p.add_argument("--ou", help="organisational unit (CSV rows may override)")
    p.add_argument("--key", choices=build.KEY_TYPES, help="key type (default: the CA's)")
    p.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["client"], help="validity (default 365)")

    p = verb("sign-csr", cmd_sign_csr, "sign device CSRs (files, or directories of *.csr/*.pem) as client certificates")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--o", help="organisation (overrides the CSR's)")
    p.add_argument("--ou", help="organisational unit (overrides the CSR's)")
    p.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["client"], help="validity (default 365)")

    p = verb("renew", cmd_renew, "a new certificate and key for a device under the same name; the old one stays valid for a grace period (or --revoke-old)")
    add_renew_arguments(p)

    p = verb("revoke", cmd_revoke, "mark a certificate revoked (then run crl)")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--serial", metavar="HEX")
    p.add_argument("--reason", choices=list(build.REASONS), default="unspecified")

    p = verb("crl", cmd_crl, "sign and write crl.pem/crl.der (and root-crl.* with an intermediate); --publish uploads them to S3")
    p.add_argument("--days", type=positive_days, default=DEFAULT_DAYS["crl"], help="nextUpdate in days (default 7)")
    p.add_argument("--root-days", type=positive_days, help="nextUpdate of the root's CRL (default: --days); skipped when root.key is offline")
    p.add_argument("--publish", metavar="BUCKET", help="then upload crl.der (and root-crl.der) to this S3 bucket, under the paths of the CDP URLs")
    p.add_argument("--prefix", help="with --publish: key prefix; replaces the directory part of the CDP paths (default: the CDP paths as they are, or nothing)")
    p.add_argument("--region", help="with --publish: AWS region (default: boto3's configuration)")
    p.add_argument("--profile", help="with --publish: AWS profile (default: boto3's configuration, e.g. AWS_PROFILE)")
    p.add_argument("--max-age", type=non_negative_int, default=300, metavar="SECONDS", help="with --publish: Cache-Control max-age of the objects (default 300)")

    p = verb("export-pfx", cmd_export_pfx, f"write pfx/NAME.pfx with key and chain (password from {PASSWORD_ENV} or a prompt)")
    p.add_argument("names", nargs="+", metavar="NAME", help="names, or patterns with * and ? (e.g. 'LAPTOP-*': the valid certificates with a key here); one password for all")
    p.add_argument("--legacy", action="store_true", help="3DES + SHA-1 MAC for Windows Server 2016 and older")
    p.add_argument("--jobs", type=non_negative_int, metavar="N", help="worker processes (default: one per CPU, up to 8, from 8 files on; 1 = none)")
    p.add_argument("--allow-short-password", action="store_true", help=f"accept a password shorter than {MIN_PFX_PASSWORD} characters (the PFX holds the key: a short password falls to offline guessing)")

    p = verb("inspect", cmd_inspect, "print a certificate or CRL (PEM or DER) as JSON")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="(always JSON)")

    p = verb("check", cmd_check, "would an IIS beacon accept this device certificate? (exit 0 accept, 1 reject)")
    p.add_argument("cert", metavar="CERT", nargs="?", help="the device certificate (PEM, may be followed by its chain; or DER)")
    p.add_argument("--chain", action=_FileList, nargs="+", default=[], metavar="FILE", help="the beacon's trusted CAs (default: the PKI dir's)")
    p.add_argument("--crl", action=_FileList, nargs="+", default=[], metavar="FILE", help="CRLs the beacon has (default: the PKI dir's)")
    p.add_argument("--stack-config", metavar="FILE", help="stacks/Pulumi.<stack>.yaml: adds extraMappingRules/denyMappingRules (and clientCaCertificates as trust without --chain)")
    p.add_argument("--issuer-cn", help="CN of the Issuer rule (default: the issuing CA(s) among the trusted certificates)")
    p.add_argument("--at", metavar="ISO8601", help="check at this time (default now)")
    p.add_argument("--json", action="store_true")

    p = verb("list", cmd_list, "list issued certificates")
    p.add_argument("--expiring", type=non_negative_int, metavar="DAYS", help="only valid certificates ending within DAYS (or already ended)")
    p.add_argument("--json", action="store_true")

    p = verb("bundle", cmd_bundle, "signed device onboarding kits bundles/NAME/: PFX + install.ps1 + mgssetup.ini (--platform windows, the default), PEM + rollout file (unix), or both (all) (docs/onboarding.md)")
    add_bundle_arguments(p)

    p = verb("verify-bundle", cmd_verify_bundle, "prove kits are unaltered (signed by the kit signer) and work against a stack, offline: PFX, chain, CRL, mapping, CA set, agent files (exit 1 when one fails)")
    add_verify_arguments(p)
    return parser


_ENCRYPT_HELP = (f"write {{keys}} encrypted (PKCS#8, AES-256) with the password in {CA_PASSWORD_ENV} (at least {MIN_CA_PASSWORD} characters); "
                 f"every verb that signs then reads {CA_PASSWORD_ENV}")


def _server_ca_arguments(p: argparse.ArgumentParser, cn_flag: str, crl_flag: str, required: bool = False) -> None:
    """The server CA's options: init-ca --server-domain/--server-cn/--server-crl-url, init-server-ca --server-domain/--cn/--crl-url."""
    p.add_argument("--server-domain", action="append", default=[], required=required, metavar="DOMAIN",
                   help="DNS domain of the beacons (repeatable), e.g. beacons.example.org: " + ("" if required else "also ")
                   + "creates the server CA (server-ca.pem), name-constrained to these domains, which signs issue-server certificates")
    p.add_argument(cn_flag, dest="server_cn", metavar="NAME", help="common name of the server CA (default '<device CA CN> Beacon Servers')")
    p.add_argument(crl_flag, dest="server_crl_url", action="append", default=[], metavar="URL",
                   help="CDP of the server certificates: where server-crl.der is published, reachable by the devices (default: server-<file> next to each --crl-url)")


class _FileList(argparse.Action):
    """``--chain A B`` / ``--crl A B``: extend the list, and note the last group, so that a CERT
    written after the files (``check --chain ca.pem device.pem``) can be taken back from it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        items.extend(values)
        setattr(namespace, self.dest, items)
        namespace.last_file_list = (self.dest, len(values))


def _positional_cert(args: argparse.Namespace) -> None:
    """check: CERT is required; when --chain/--crl took it (the last group had several files),
    it is the last of them."""
    if args.verb != "check" or args.cert is not None:
        return
    dest, size = getattr(args, "last_file_list", (None, 0))
    if dest is not None and size >= 2:
        args.cert = getattr(args, dest).pop()
        return
    raise PkiError("check needs CERT, the device certificate (a file or a name of the PKI), e.g. check --chain ca.pem device.pem")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: what was finished is recorded before the exit."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def _handle_sigterm() -> Any:
    """SIGTERM -> Terminated (a KeyboardInterrupt) in the main thread; returns the previous handler."""
    try:
        return signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (e.g. called from a test's thread)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    problem = undecodable_argument(given)
    if problem:  # non-UTF-8 bytes would end in UnicodeEncodeError at the first file name or print
        print(f"pki: error: {problem}", file=sys.stderr)
        return 2
    parser = build_parser()
    try:
        args = parser.parse_args(given)
    except SystemExit as exc:  # argparse: usage error (2) or --help (0)
        return int(exc.code or 0)
    pki = Pki(args.dir)
    previous = _handle_sigterm()
    try:
        _positional_cert(args)
        return args.handler(args, pki)
    except PkiError as exc:
        print(f"pki: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"pki: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("pki: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("pki: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a state nothing above foresaw: still one line, never a traceback
        print(f"pki: error: unexpected {type(exc).__name__}: {' '.join(str(exc).split()) or 'no detail'} (please report it)", file=sys.stderr)
        return 2
    finally:
        gc.unfreeze()  # store.Pki froze the index it read (in-process callers go on collecting)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
