"""Command line of `python -m scripts.ops` (runbook: docs/operations.md).

Exit codes: 0 done / all good; 1 a problem was found (drift, failure, a beacon admitting what it
must refuse, something inside the expiry window) or an AWS call failed; 2 bad input (arguments,
files, stack outputs, region, credentials, a certificate refused for publishing). Errors are one
line on stderr (`ops: error: ...`), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import botocore.exceptions as bce

from components.certs import facts as cert_facts
from scripts.cli_args import bounded, undecodable_argument
from scripts.pki.inputs import read_password
from scripts.pki.store import PkiError

from . import expiry as expiry_mod
from . import probe as probe_mod
from . import readiness as readiness_mod
from . import rotate as rotate_mod
from . import secrets as secrets_mod
from . import verify as verify_mod
from .aws import Aws, translate
from .common import PROG, InputError, OpsError, iso, note, now_utc, out, table
from .outputs import StackOutputs, beacons_from, check_stack, resolve_stack
from .ssm import desired_state
from .context import Context


# ---------------------------------------------------------------------------------------------
# Argument types


_positive_int = bounded(int, 0, 36500, "a whole number")
_seconds = bounded(float, 0, 86400, "seconds", low_inclusive=False)
_days = bounded(float, 0, 36500, "a number of days")


def _pairs(certs: Sequence[str] | None, keys: Sequence[str] | None, cert_flag: str, key_flag: str) -> list[tuple[str, str]]:
    certs, keys = list(certs or []), list(keys or [])
    if len(certs) != len(keys):
        raise InputError(f"{cert_flag} and {key_flag} go in pairs: got {len(certs)} {cert_flag} and {len(keys)} {key_flag}")
    return list(zip(certs, keys))


# ---------------------------------------------------------------------------------------------
# Shared steps


def _password() -> bytes:
    try:
        return read_password(confirm=False)  # opening an existing PFX: one prompt
    except PkiError as exc:
        raise InputError(str(exc)) from None


def _load_checked_pfx(ctx: Context, path: str, hostnames: Sequence[str]) -> secrets_mod.ServerPfx:
    args = ctx.args
    pfx = secrets_mod.read_pfx_file(path, _password())
    problems = secrets_mod.certificate_problems(pfx, hostnames, args.min_days, now_utc())
    if problems:
        raise InputError(f"{path}: refused: {'; '.join(problems)}")
    return pfx


def _hostnames(ctx: Context) -> list[str]:
    given = [h.lower().rstrip(".") for h in (ctx.args.hostname or [])]
    if given:
        return given
    found = ctx.outputs.hostnames()
    if not found:
        raise InputError("no beacon host name to check the certificate's SAN against: pass --hostname NAME or --stack-outputs FILE")
    return found


def _verify_inputs(ctx: Context, why: str) -> tuple[str, list[Any], str | None, str | None]:
    args = ctx.args
    outputs = ctx.outputs
    beacons = beacons_from(outputs, args.instance_id or [], why)
    document = args.document_name or outputs.get("mtls.documentName", why)
    log_group = args.log_group or outputs.optional("logGroups.converge")
    digest = outputs.optional("mtls.stateDigest") if not args.document_name else None
    return document, beacons, log_group if isinstance(log_group, str) else None, digest if isinstance(digest, str) else None


# ---------------------------------------------------------------------------------------------
# Verbs


def cmd_publish(ctx: Context) -> int:
    args = ctx.args
    stack = check_stack(args.stack)
    if ctx.outputs.given:
        resolve_stack(stack, ctx.outputs, "publish-server-cert")
    hostnames = _hostnames(ctx)
    aws = None if args.check_only else ctx.aws  # region and credentials before the password prompt
    pfx = _load_checked_pfx(ctx, args.pfx, hostnames)
    facts = secrets_mod.certificate_facts(pfx.certificate, now_utc())
    if aws is None:
        payload = {"ok": True, "checkOnly": True, "certificate": facts, "hostnames": hostnames}
        ctx.emit(payload, [f"{args.pfx}: acceptable for {', '.join(hostnames)}: {facts['subject']}, thumbprint {facts['thumbprint']}, until {facts['notAfter']} ({facts['daysLeft']} days); nothing published (--check-only)"])
        return 0
    if args.kms_key_id:
        note(f"KMS key {args.kms_key_id}: its key policy must let the beacons' instance role kms:Decrypt (the stack's role policy grants only secretsmanager:GetSecretValue)")
    result = secrets_mod.publish(aws, stack, pfx, args.kms_key_id)
    lines_cfg = secrets_mod.pulumi_config_lines(stack, result["pfx"]["arn"], result["password"]["arn"])
    payload = {
        "ok": True,
        "stack": stack,
        "region": aws.region,
        "certificate": facts,
        "hostnames": hostnames,
        "secrets": result,
        "pulumiConfig": lines_cfg,
    }
    lines = [
        f"certificate {facts['subject']} thumbprint {facts['thumbprint']} until {facts['notAfter']} ({facts['daysLeft']} days), SAN covers {', '.join(hostnames)}",
        f"PFX secret:      {result['pfx']['arn']} ({result['pfx']['action']}, version {result['pfx']['versionId']})",
        f"password secret: {result['password']['arn']} ({result['password']['action']}, version {result['password']['versionId']})",
        "",
        "point the stack at them (once; later versions need no pulumi up):",
        *[f"  {line}" for line in lines_cfg],
        f"  pulumi up --stack {stack}",
        f"the beacons import the new certificate on their next converge run; to do it now: {PROG} rotate-server-cert {args.pfx} --stack {stack} --stack-outputs FILE",
    ]
    ctx.emit(payload, lines)
    return 0


def cmd_verify(ctx: Context) -> int:
    args = ctx.args
    document, beacons, log_group, digest = _verify_inputs(ctx, "verify needs the beacons' instance ids and the converge document")
    result = verify_mod.run(
        ctx.aws, document, beacons, log_group=log_group, expected_digest=digest, timeout=args.timeout, interval=args.poll, warn_days=args.warn_days
    )
    ctx.emit(result.to_dict(), result.lines())
    return 0 if result.ok else 1


def cmd_rotate(ctx: Context) -> int:
    args = ctx.args
    why = "rotate-server-cert needs the beacons, the converge document and its association"
    stack = resolve_stack(args.stack, ctx.outputs, "rotate-server-cert")
    document, beacons, log_group, digest = _verify_inputs(ctx, why)
    association = args.association_id or ctx.outputs.get("mtls.associationId", why)
    hostnames = _hostnames(ctx)
    aws = ctx.aws
    pfx = _load_checked_pfx(ctx, args.pfx, hostnames)
    result = rotate_mod.run(
        aws,
        stack,
        pfx,
        beacons,
        document=document,
        association_id=association,
        log_group=log_group,
        expected_digest=digest,
        kms_key_id=args.kms_key_id,
        timeout=args.timeout,
        interval=args.poll,
        warn_days=args.warn_days,
    )
    ctx.emit(result.to_dict(), result.lines())
    return 0 if result.ok else 1


def cmd_probe(ctx: Context) -> int:
    args = ctx.args
    target = probe_mod.parse_target(args.url, args.connect, args.path)
    probe_mod.load_ca(args.ca)
    enforcement = args.enforcement or ctx.outputs.optional("enforcement") or "require"
    devices = _pairs(args.cert, args.key, "--cert", "--key")
    identities = probe_mod.identities(devices, _pairs(args.revoked_cert, args.revoked_key, "--revoked-cert", "--revoked-key"), str(enforcement))
    notes = probe_mod.certificate_notes(identities)
    with tempfile.TemporaryDirectory(prefix="probe-foreign-") as folder:  # 0700; the throwaway key never outlives the run
        if devices:
            identities.append(probe_mod.foreign_identity(devices[0][0], Path(folder)))
        else:
            notes.append("no --cert given: the row of a foreign CA with the issuing CA's name needs a device certificate to copy the names from")
        rows = probe_mod.run_matrix(target, args.ca, identities, args.tls12, args.timeout)
    admits = [r for r in rows if r.security_failure]
    payload = {
        "ok": all(r.ok for r in rows),
        "enforcement": enforcement,
        "url": args.url,
        "connect": f"{target.connect}:{target.port}",
        "path": target.path,
        "admitsWhatItShouldRefuse": bool(admits),
        "inconclusive": sorted({r.identity.label for r in rows if r.outcome == "inconclusive"}),
        "deviceCertificatesTested": any(r.identity.expect == "admit" for r in rows),
        "notes": notes,
        "matrix": [r.to_dict() for r in rows],
    }
    lines = [f"probe https://{target.host}:{target.port}{target.path} (connecting to {target.connect}:{target.port})"]
    lines += [f"note: {n}" for n in notes]
    lines += table(
        ("CASE", "TLS", "EXPECT", "GOT", "RESULT", "DETAIL"),
        [
            (r.identity.label, r.tls, r.identity.expect, r.outcome, "ok" if r.ok else ("FAIL: ADMITTED" if r.security_failure else "FAIL"), r.detail)
            for r in rows
        ],
    )
    lines += probe_mod.summary_lines(rows)  # FAIL lines (admits, inconclusive, locked out) or the ok line
    ctx.emit(payload, lines)
    return 0 if payload["ok"] else 1


def cmd_expiry(ctx: Context) -> int:
    args = ctx.args
    now = now_utc()
    items: list[expiry_mod.Item] = []
    cas = []
    urls: list[str] = [expiry_mod.check_url(u) for u in args.crl_url or []]
    local: list[tuple[str, expiry_mod.Item]] = []
    notes: list[str] = []
    stack = args.stack or ctx.outputs.stack_name()
    if stack:
        stack = resolve_stack(stack, ctx.outputs, "expiry")
    if args.put_metrics and not stack:
        raise InputError("--put-metrics needs the stack name for the metric dimension: pass --stack NAME or --stack-outputs FILE")
    if args.pki:
        found, cas, pki_urls, local = expiry_mod.pki_items(args.pki)
        items += found
        urls = expiry_mod.dedupe_urls(urls, pki_urls)
    if stack and not args.no_server_cert:
        published = secrets_mod.read_published(ctx.aws, stack)
        if published is None:
            notes.append(f"no server certificate in Secrets Manager ({secrets_mod.secret_name(stack, secrets_mod.PFX_SECRET)} in {ctx.aws.region})")
        else:
            pfx, arn = published
            items.append(expiry_mod.certificate_item("server-certificate", pfx.certificate, arn))
    document = ctx.outputs.optional("mtls.documentName")
    if isinstance(document, str) and document and not args.no_document:
        state, why = desired_state(ctx.aws, document)
        if why:
            notes.append(why)
        if state:
            known = {cert_facts.thumbprint(c) for c in cas}
            for entry in state.get("trustStores") or []:
                try:
                    cert = cert_facts.load_certificates(str(entry.get("pem", "")).encode())[0]
                except (ValueError, IndexError):
                    continue
                if cert_facts.thumbprint(cert) not in known:
                    known.add(cert_facts.thumbprint(cert))
                    cas.append(cert)
                    items.append(expiry_mod.certificate_item("ca-certificate", cert, f"{entry.get('store')} store ({document})"))
            urls = expiry_mod.dedupe_urls(urls, state.get("crlUrls") or [])
    egress = ctx.outputs.optional("crlEgress.urls")
    if isinstance(egress, list):
        urls = expiry_mod.dedupe_urls(urls, egress)
    urls = expiry_mod.dedupe_urls(urls, *(cert_facts.cdp_urls(ca) for ca in cas))  # e.g. an intermediate's root CRL
    # URLs that serve a CA certificate, not a CRL: AIA caIssuers of the CAs, and those the outputs name as AIA only.
    sources = ctx.outputs.optional("crlEgress.sources")
    certificate_urls = {u for ca in cas for u in cert_facts.aia_urls(ca, "caIssuers")}
    if isinstance(sources, dict):
        certificate_urls |= {u for u, where in sources.items() if isinstance(where, list) and where and all(str(w).startswith(("AIA of", "crlHosting")) for w in where)}
    published_crls = expiry_mod.crl_url_items(urls, cas, args.fetch_timeout, certificate_urls)
    items += published_crls
    items += [item for _, item in local]
    notes += expiry_mod.unpublished(local, published_crls)
    expiry_mod.fail_if_empty(items)
    judged = expiry_mod.judge(items, now, args.warn_days, args.crl_warn_days)
    problems = [i for i in judged if i.state != "ok"]
    metrics = 0
    if args.put_metrics and stack:
        metrics = expiry_mod.put_metrics(ctx.aws, expiry_mod.metric_data(judged, stack, now))
        notes.append(f"{metrics} CloudWatch metric value(s) put in namespace {expiry_mod.METRIC_NAMESPACE} (Stack={stack})")
    payload = {
        "ok": not problems,
        "at": iso(now),
        "warnDays": args.warn_days,
        "crlWarnDays": args.crl_warn_days,
        "stack": stack,
        "notes": notes,
        "items": [i.to_dict() for i in judged],
        "metricsPut": metrics,
    }
    shown = judged if args.top is None else judged[: args.top]
    rows = [
        (i.kind, i.name, iso(i.until) or "-", "-" if i.days is None else f"{i.days:.1f}", i.state.upper() if i.state != "ok" else "ok", i.detail, i.source)
        for i in shown
    ]
    lines = table(("KIND", "NAME", "UNTIL", "DAYS", "STATE", "DETAIL", "SOURCE"), rows)
    if len(shown) < len(judged):
        lines.append(f"... {len(judged) - len(shown)} more (all in --json)")
    lines += [f"note: {n}" for n in notes]
    if problems:
        lines.append(
            f"FAIL: {len(problems)} item(s) expired, inside the window (certificates {args.warn_days:g} days, CRLs {args.crl_warn_days:g} days) or unreachable"
        )
    else:
        lines.append(f"ok: nothing within {args.warn_days:g} days (CRLs: {args.crl_warn_days:g} days)")
    ctx.emit(payload, lines)
    return 0 if not problems else 1


# ---------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Day-2 operations for FlexNet beacons: certificates in Secrets Manager, verify, probe, expiry, rotation (docs/operations.md).",
    )
    common = argparse.ArgumentParser(add_help=False)
    for target, suppress in ((parser, False), (common, True)):
        default = argparse.SUPPRESS if suppress else None
        target.add_argument("--region", default=default, help="AWS region (default: from the stack outputs' ARNs, else AWS_REGION, AWS_DEFAULT_REGION or the profile)")
        target.add_argument("--profile", default=default, help="AWS profile (default: AWS_PROFILE / default chain)")
        target.add_argument("--stack-outputs", default=default, metavar="FILE", help="JSON of `pulumi stack output --json`")
        target.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False, help="machine-readable output")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, handler: Callable[[Context], int], text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    def pfx_options(p: argparse.ArgumentParser, stack_required: bool) -> None:
        p.add_argument("pfx", metavar="PFX", help="the beacon certificate with its key (PKCS#12); password from PKI_PASSWORD or a prompt")
        p.add_argument("--stack", required=stack_required, help="Pulumi stack name: secrets go under flexnet-beacon/<stack>/")
        p.add_argument("--kms-key-id", help="KMS key for the secrets (default: aws/secretsmanager)")
        p.add_argument("--min-days", type=_positive_int, default=30, help="refuse a certificate ending within this many days (default 30)")
        p.add_argument("--hostname", action="append", metavar="NAME", help="beacon host name the SAN must cover (repeatable; default: the outputs' beacons[].hostname)")

    def ssm_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--instance-id", action="append", metavar="ID", help="beacon instance (repeatable; default: the outputs' beacons)")
        p.add_argument("--document-name", help="converge SSM document (default: mtls.documentName of the outputs)")
        p.add_argument("--log-group", help="converge log group, for reports longer than SSM returns (default: logGroups.converge)")
        p.add_argument("--timeout", type=_seconds, default=900, help="seconds to wait for SSM (default 900)")
        p.add_argument("--poll", type=_seconds, default=3, help="seconds between status polls (default 3)")
        p.add_argument("--warn-days", type=_positive_int, default=30, help="warn when the bound certificate ends within N days (default 30)")

    p = verb("publish-server-cert", cmd_publish, "store the beacon's PFX and its password in Secrets Manager (new version when they exist)")
    pfx_options(p, True)
    p.add_argument("--check-only", action="store_true", help="check the certificate, publish nothing (no AWS call)")

    p = verb("verify", cmd_verify, "run the converge document report-only on every beacon; table per beacon; exit 1 on drift or failure")
    ssm_options(p)

    p = verb("probe", cmd_probe, "mTLS matrix against a beacon: no certificate refused, devices admitted, revoked refused")
    p.add_argument("url", metavar="URL", help="https://HOST[:PORT]/ManageSoftDL/")
    p.add_argument("--ca", required=True, metavar="CA.pem", help="CA certificate(s) that issued the beacon's own certificate")
    p.add_argument("--cert", action="append", metavar="CERT.pem", help="device certificate that must be admitted (repeatable, with --key)")
    p.add_argument("--key", action="append", metavar="KEY.pem", help="its private key (unencrypted PEM)")
    p.add_argument("--revoked-cert", action="append", metavar="CERT.pem", help="revoked device certificate that must be refused (with --revoked-key)")
    p.add_argument("--revoked-key", action="append", metavar="KEY.pem")
    p.add_argument("--path", help="request path (default: the URL's, else /ManageSoftDL/)")
    p.add_argument("--connect", metavar="ADDR", help="connect to this address instead of the URL's host (SNI and name check still use the host)")
    p.add_argument("--tls12", action="store_true", help="repeat the matrix with TLS 1.2 at most")
    p.add_argument("--timeout", type=_seconds, default=10, help="seconds per connection (default 10)")
    p.add_argument("--enforcement", choices=probe_mod.MODES, help="what the beacon is meant to do (default: the stack outputs' enforcement, else require): under observe a request without a certificate is admitted")

    p = verb("expiry", cmd_expiry, "time left on the server certificate, CA and device certificates and each published CRL")
    p.add_argument("--pki", metavar="DIR", help="PKI directory of scripts.pki (CA, issued certificates, CRL URLs)")
    p.add_argument("--stack", help="stack whose server certificate to read from Secrets Manager (default: from --stack-outputs)")
    p.add_argument("--warn-days", type=_days, default=30, help="certificates: window in days (default 30)")
    p.add_argument("--crl-warn-days", type=_days, default=2, help="CRLs: window in days before nextUpdate (default 2)")
    p.add_argument("--crl-url", action="append", metavar="URL", help="extra CRL URL to fetch (repeatable)")
    p.add_argument("--fetch-timeout", type=_seconds, default=10, help="seconds per CRL download (default 10)")
    p.add_argument("--put-metrics", action="store_true", help="publish DaysLeft and CrlUnreachable to CloudWatch (namespace FlexNetBeacon)")
    p.add_argument("--no-server-cert", action="store_true", help="skip the server certificate in Secrets Manager")
    p.add_argument("--no-document", action="store_true", help="do not read CAs and CRL URLs from the converge document")
    p.add_argument("--top", type=_positive_int, help="show only the first N rows of the table")

    p = verb("rotate-server-cert", cmd_rotate, "publish a new PFX version, run the association now, verify the new thumbprint is bound")
    pfx_options(p, False)
    ssm_options(p)
    p.add_argument("--association-id", help="State Manager association (default: mtls.associationId of the outputs)")

    p = verb("readiness", readiness_mod.command, readiness_mod.HELP)
    readiness_mod.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    problem = undecodable_argument(given)
    if problem:  # non-UTF-8 bytes (e.g. in --connect) would end in UnicodeEncodeError
        print(f"ops: error: {problem}", file=sys.stderr)
        return 2
    parser = build_parser()
    try:
        args = parser.parse_args(given)
    except SystemExit as exc:  # usage error (2) or --help (0)
        return int(exc.code or 0)
    ctx = Context(args)
    try:
        return args.handler(ctx)
    except OpsError as exc:
        print(f"ops: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (bce.BotoCoreError, bce.ClientError) as exc:
        error = translate(exc, ctx.region)
        print(f"ops: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("ops: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - nothing above foresaw it: still one line, never a traceback
        print(f"ops: error: unexpected {type(exc).__name__}: {' '.join(str(exc).split()) or 'no detail'} (please report it)", file=sys.stderr)
        return 2
