"""The beacon's server certificate in Secrets Manager: the PFX as a binary secret and its password
as a second secret, both named under flexnet-beacon/<stack>/ (the only secrets the beacon's
instance role may read), created once and then updated with new versions.

The converge script (components/iis/windows/Set-BeaconMtls.ps1) reads the AWSCURRENT version of
both on every run and imports the certificate when its thumbprint is not in LocalMachine\\My.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs12

from components.certs import facts as cert_facts
from components.safe_files import KEY_FILE_LIMIT, FileRefused, read_regular
from scripts.pki.build import key_problem

from .aws import Aws, error_code
from .common import PROJECT, InputError, OpsError, days_left, iso

PFX_SECRET = "server-pfx"
PASSWORD_SECRET = "server-pfx-password"
SECRET_BINARY_LIMIT = 65536
CONFIG_KEYS = {"pfx": "serverCertificateSecretArn", "password": "serverCertificatePasswordSecretArn"}


def secret_name(stack: str, leaf: str) -> str:
    return f"{PROJECT}/{stack}/{leaf}"


@dataclass
class ServerPfx:
    path: str
    data: bytes
    password: bytes
    certificate: x509.Certificate
    key: Any
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def thumbprint(self) -> str:
        return cert_facts.thumbprint(self.certificate)


def load_pfx(data: bytes, password: bytes, source: str) -> ServerPfx:
    """Open a PKCS#12 file; InputError with the reason when it cannot be used."""
    if not data:
        raise InputError(f"{source}: empty file")
    if len(data) > SECRET_BINARY_LIMIT:
        raise InputError(f"{source}: {len(data)} bytes; a Secrets Manager secret holds at most {SECRET_BINARY_LIMIT} (drop extra chain certificates)")
    try:
        key, cert, chain = pkcs12.load_key_and_certificates(data, password)
    except ValueError:
        raise InputError(f"{source}: wrong password, or not a PKCS#12 (.pfx/.p12) file") from None
    except Exception as exc:  # unsupported PBE schemes raise other types
        raise InputError(f"{source}: cannot open the PKCS#12 file ({type(exc).__name__}: {exc})") from None
    if cert is None:
        raise InputError(f"{source}: the PFX holds no certificate with its key (an end-entity certificate is needed)")
    if key is None:
        raise InputError(f"{source}: the PFX holds no private key: HTTP.sys cannot serve TLS with it")
    return ServerPfx(source, data, password, cert, key, list(chain or []))


def read_pfx_file(path: str, password: bytes) -> ServerPfx:
    try:
        data = read_regular(Path(path), KEY_FILE_LIMIT)  # a regular file of at most 1 MiB
    except OSError as exc:
        raise InputError(f"{path}: unreadable ({exc.strerror or exc})") from None
    except FileRefused as exc:
        raise InputError(f"{path}: {exc}") from None
    return load_pfx(data, password, path)


def host_matches(host: str, sans: dict[str, list[str]]) -> bool:
    """RFC 6125: a DNS SAN matches the whole name case-insensitively; '*.' matches one label."""
    host = host.lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return any(ipaddress.ip_address(ip) == address for ip in sans.get("ip", []))
    for name in sans.get("dns", []):
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:] and host.split(".", 1)[0]:
            return True
    return False


def certificate_problems(pfx: ServerPfx, hostnames: Sequence[str], min_days: int, now: dt.datetime) -> list[str]:
    """Why this PFX must not become the beacon's certificate (empty: fine)."""
    cert = pfx.certificate
    problems = []
    names = cert_facts.eku_names(cert)
    if names is None:
        problems.append("no Extended Key Usage extension: a beacon certificate needs serverAuth and clientAuth")
    else:
        missing = [n for n in ("serverAuth", "clientAuth") if n not in names]
        if missing:
            problems.append(f"EKU {', '.join(names) or '(empty)'} lacks {' and '.join(missing)}: a beacon certificate needs serverAuth and clientAuth")
    sans = cert_facts.subject_alt_names(cert)
    unmatched = [h for h in hostnames if not host_matches(h, sans)]
    if unmatched:
        have = ", ".join(sans.get("dns", []) + sans.get("ip", [])) or "no DNS/IP SAN"
        problems.append(f"SAN ({have}) does not cover the beacon host name(s) {', '.join(unmatched)}")
    left = days_left(cert.not_valid_after_utc, now)
    if left < 0:
        problems.append(f"expired {iso(cert.not_valid_after_utc)}")
    elif left < min_days:
        problems.append(f"expires {iso(cert.not_valid_after_utc)}, in {left:.1f} days (< --min-days {min_days})")
    if cert.not_valid_before_utc > now:
        problems.append(f"not valid before {iso(cert.not_valid_before_utc)}")
    if cert_facts.is_ca(cert):
        problems.append("a CA certificate (basicConstraints cA=TRUE) cannot be the beacon's certificate")
    problem = key_problem(pfx.key.public_key())
    if problem:
        problems.append(f"unsupported key {problem}")
    elif _spki(pfx.key.public_key()) != _spki(cert.public_key()):
        problems.append("the private key does not belong to the certificate")
    return problems


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def certificate_facts(cert: x509.Certificate, now: dt.datetime) -> dict[str, Any]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "thumbprint": cert_facts.thumbprint(cert),
        "serial": cert_facts.serial_hex(cert.serial_number),
        "notBefore": iso(cert.not_valid_before_utc),
        "notAfter": iso(cert.not_valid_after_utc),
        "daysLeft": round(days_left(cert.not_valid_after_utc, now), 1),
        "eku": cert_facts.eku_names(cert),
        "san": cert_facts.subject_alt_names(cert),
    }


def tags_for(stack: str, leaf: str, cert: x509.Certificate) -> list[dict[str, str]]:
    return [
        {"Key": "Project", "Value": PROJECT},
        {"Key": f"{PROJECT}:stack", "Value": stack},
        {"Key": f"{PROJECT}:component", "Value": "server-certificate"},
        {"Key": "Name", "Value": secret_name(stack, leaf)},
        {"Key": "ManagedBy", "Value": "scripts.ops"},
        {"Key": f"{PROJECT}:thumbprint", "Value": cert_facts.thumbprint(cert)},
        {"Key": f"{PROJECT}:not-after", "Value": iso(cert.not_valid_after_utc) or ""},
    ]


def _describe(sm: Any, name: str) -> dict[str, Any] | None:
    try:
        return sm.describe_secret(SecretId=name)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def _current_value(sm: Any, arn: str) -> dict[str, Any] | None:
    try:
        return sm.get_secret_value(SecretId=arn)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":  # a secret without an AWSCURRENT value
            return None
        raise


def upsert_secret(
    aws: Aws, name: str, value: bytes | str, description: str, tags: list[dict[str, str]], kms_key_id: str | None
) -> dict[str, Any]:
    """Create the secret, or put a new version into the existing one (never a second secret).
    Returns {name, arn, versionId, action: created|new-version|unchanged}."""
    sm = aws.client("secretsmanager")
    field_name = "SecretBinary" if isinstance(value, bytes) else "SecretString"
    found = _describe(sm, name)
    if found is None:
        extra = {"KmsKeyId": kms_key_id} if kms_key_id else {}
        made = sm.create_secret(Name=name, Description=description, Tags=tags, **{field_name: value}, **extra)
        return {"name": name, "arn": made["ARN"], "versionId": made.get("VersionId"), "action": "created"}
    arn = found["ARN"]
    if found.get("DeletedDate"):
        raise OpsError(
            f"secret {name} is scheduled for deletion ({found['DeletedDate']}): restore it with "
            f"`aws secretsmanager restore-secret --secret-id {name} --region {aws.region}` and run this again"
        )
    current = _current_value(sm, arn) or {}
    same = current.get(field_name) == value
    if kms_key_id and found.get("KmsKeyId") != kms_key_id:
        made = sm.update_secret(SecretId=arn, KmsKeyId=kms_key_id, Description=description, **{field_name: value})
        action, version = "new-version", made.get("VersionId")
    elif same:
        action, version = "unchanged", current.get("VersionId")
        if found.get("Description") != description:
            sm.update_secret(SecretId=arn, Description=description)
    else:
        made = sm.put_secret_value(SecretId=arn, **{field_name: value})
        action, version = "new-version", made.get("VersionId")
        if found.get("Description") != description:
            sm.update_secret(SecretId=arn, Description=description)
    sm.tag_resource(SecretId=arn, Tags=tags)
    return {"name": name, "arn": arn, "versionId": version, "action": action}


def publish(aws: Aws, stack: str, pfx: ServerPfx, kms_key_id: str | None) -> dict[str, Any]:
    """Store the PFX and its password; the PFX first, so a run in between imports the new
    certificate with the new password at the latest on its next run."""
    cn = cert_facts.common_name(pfx.certificate.subject) or pfx.certificate.subject.rfc4514_string()
    pfx_result = upsert_secret(
        aws,
        secret_name(stack, PFX_SECRET),
        pfx.data,
        f"{PROJECT} {stack}: beacon server certificate (PFX) {cn}, thumbprint {pfx.thumbprint}",
        tags_for(stack, PFX_SECRET, pfx.certificate),
        kms_key_id,
    )
    password_result = upsert_secret(
        aws,
        secret_name(stack, PASSWORD_SECRET),
        pfx.password.decode("utf-8"),
        f"{PROJECT} {stack}: password of the beacon server certificate PFX ({PFX_SECRET})",
        tags_for(stack, PASSWORD_SECRET, pfx.certificate),
        kms_key_id,
    )
    return {"pfx": pfx_result, "password": password_result}


def pulumi_config_lines(stack: str, pfx_arn: str, password_arn: str) -> list[str]:
    return [
        f"pulumi config set {PROJECT}:{CONFIG_KEYS['pfx']} {pfx_arn} --stack {stack}",
        f"pulumi config set {PROJECT}:{CONFIG_KEYS['password']} {password_arn} --stack {stack}",
    ]


def read_published(aws: Aws, stack: str) -> tuple[ServerPfx, str] | None:
    """The AWSCURRENT PFX of the stack and its secret ARN; None when the stack has none."""
    sm = aws.client("secretsmanager")
    pfx_name, password_name = secret_name(stack, PFX_SECRET), secret_name(stack, PASSWORD_SECRET)
    try:
        pfx_value = sm.get_secret_value(SecretId=pfx_name)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    try:
        password_value = sm.get_secret_value(SecretId=password_name)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise OpsError(f"secret {pfx_name} exists but {password_name} does not: publish the certificate again with publish-server-cert") from None
        raise
    data = pfx_value.get("SecretBinary")
    if data is None:
        raise OpsError(f"secret {pfx_name} has no binary value: store the PFX with publish-server-cert")
    password = (password_value.get("SecretString") or "").encode("utf-8")
    try:
        return load_pfx(data, password, f"secret {pfx_name}"), pfx_value["ARN"]
    except InputError as exc:
        raise OpsError(f"{exc} (the password secret {password_name} does not open it?)") from None
