"""One definition of secret material (policy/secret_patterns.py), two users that must agree on it:
the policy pack's no-secret-material rule (policy.rules.find_secret_material) and the test suite's
repository scan (components.secret_scan.scan). Every sample below is a secret for both or for neither.

No secret material is written in this file: keys and PFX blobs are made at run time with
`cryptography`, passwords are random, and the word itself is assembled, so that the repository scan
finds nothing here.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import textwrap
from typing import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from components.secret_scan import scan
from policy import rules, secret_patterns

PW = "".join(("pass", "word"))
Material = dict[str, str]


@pytest.fixture(scope="module")
def material() -> Material:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secret-patterns")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ec_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1)).sign(ec_key, hashes.SHA256())
    )
    pem, none = serialization.Encoding.PEM, serialization.NoEncryption()
    secret = secrets.token_hex(12).encode()
    legacy = (
        serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(hashes.SHA1()).build(secret)
    )

    def pfx(encryption: serialization.KeySerializationEncryption, key: ec.EllipticCurvePrivateKey | None = ec_key) -> str:
        return base64.b64encode(pkcs12.serialize_key_and_certificates(b"beacon", key, cert, None, encryption)).decode()

    return {
        "ec": ec_key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, none).decode(),
        "rsa": rsa_key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, none).decode(),
        "pkcs8": rsa_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, none).decode(),
        "encrypted": ec_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                          serialization.BestAvailableEncryption(secret)).decode(),
        "openssh": ec_key.private_bytes(pem, serialization.PrivateFormat.OpenSSH, none).decode(),
        "pfx": pfx(serialization.BestAvailableEncryption(secret)),
        "pfx_plain": pfx(none),
        "pfx_legacy": pfx(legacy),
        "pfx_cert_only": pfx(none, key=None),
        "cert_pem": cert.public_bytes(pem).decode(),
        "cert_b64": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
        "spki_b64": base64.b64encode(ec_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode(),
        "rsa_spki_b64": base64.b64encode(rsa_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode(),
        "token": "t0" + secrets.token_hex(8) + "!",
    }


Sample = tuple[str, Callable[[Material], str], bool]

SAMPLES: list[Sample] = [
    # --- PEM private keys ---------------------------------------------------------------------
    ("pem-ec", lambda m: m["ec"], True),
    ("pem-rsa", lambda m: m["rsa"], True),
    ("pem-pkcs8", lambda m: m["pkcs8"], True),
    ("pem-encrypted-pkcs8", lambda m: m["encrypted"], True),
    ("pem-openssh", lambda m: m["openssh"], True),
    ("pem-in-powershell-here-string", lambda m: f"$key = @'\n{m['pkcs8']}'@\n", True),
    ("pem-in-json", lambda m: json.dumps({"key": m["ec"]}), True),
    ("pem-header-only", lambda m: "-----BEGIN " + "DSA PRIVATE KEY-----", True),
    # --- base64 PKCS#12 / PFX -----------------------------------------------------------------
    ("pfx-aes", lambda m: m["pfx"], True),
    ("pfx-unencrypted", lambda m: m["pfx_plain"], True),
    ("pfx-legacy-3des", lambda m: m["pfx_legacy"], True),
    ("pfx-certificate-only", lambda m: m["pfx_cert_only"], True),
    ("pfx-in-json", lambda m: json.dumps({"blob": m["pfx"]}), True),
    ("pfx-in-powershell", lambda m: f"$pfx = [Convert]::FromBase64String('{m['pfx']}')", True),
    ("pfx-wrapped-64", lambda m: "\n".join(textwrap.wrap(m["pfx"], 64)), True),
    ("pfx-after-word", lambda m: "pfx" + m["pfx"], True),
    # --- literal passwords --------------------------------------------------------------------
    ("json", lambda m: json.dumps({PW: m["token"]}), True),
    ("json-escaped", lambda m: json.dumps({"content": json.dumps({PW: m["token"]})}), True),
    ("json-prefixed-name", lambda m: json.dumps({"db" + PW.capitalize(): m["token"]}), True),
    ("json-short-value", lambda m: json.dumps({PW: "pw"}), True),
    ("json-quoted-keyword", lambda m: json.dumps({PW: "required"}), True),
    ("powershell-double", lambda m: f'${PW} = "{m["token"]}"', True),
    ("powershell-single", lambda m: f"${PW} = '{m['token']}'", True),
    ("powershell-backslash", lambda m: f'${PW} = "CORP\\{m["token"]}"', True),
    ("powershell-next-line", lambda m: f"${PW} =\n    '{m['token']}'", True),
    ("powershell-securestring", lambda m: f"ConvertTo-SecureString -String '{m['token']}' -AsPlainText -Force", True),
    ("powershell-parameter", lambda m: f"New-LocalUser -Name x -{PW.capitalize()} '{m['token']}'", True),
    ("yaml-bare", lambda m: f"{PW}: {m['token']}", True),
    ("yaml-quoted", lambda m: f"db{PW.capitalize()}: \"{m['token']}\"", True),
    ("yaml-passphrase", lambda m: f"ssh_{PW[:4]}phrase: {m['token']}", True),
    ("connection-string", lambda m: f"Server=db;User Id=app;{PW.capitalize()}={m['token']};", True),
    ("env-file", lambda m: f"PKI_{PW.upper()}={m['token']}", True),
    ("pwd", lambda m: f"pwd='{m['token']}'", True),
    ("mismatched-quotes", lambda m: f"echo \"{PW}='{m['token']}\"", True),
    ("quoted-starting-with-at", lambda m: json.dumps({PW: "@" + m["token"]}), True),
    ("quoted-starting-with-bracket", lambda m: f"${PW} = '[{m['token']}'", True),
    ("url-userinfo", lambda m: f"crlUrls: [\"http://crluser:{m['token']}@crl.example.com/devices.crl\"]", True),
    ("url-userinfo-https", lambda m: f"https://svc:{m['token']}@pki.example.com/ca.cer", True),
    # --- not secrets --------------------------------------------------------------------------
    ("url-plain", lambda m: "http://crl.example.com:8080/devices.crl", False),
    ("url-user-only", lambda m: "ssh://git@github.com/example/repo", False),
    ("url-at-in-path", lambda m: "https://example.com/people/@someone:x", False),
    ("placeholder-angle", lambda m: f"{PW}='<ACCOUNT {PW.upper()}>'", False),
    ("placeholder-json-angle", lambda m: json.dumps({PW: "<" + PW + ">"}), False),
    ("placeholder-template", lambda m: f"{PW}: ${{DB_{PW.upper()}}}", False),
    ("placeholder-template-quoted", lambda m: json.dumps({PW: "${var.db}"}), False),
    ("placeholder-ssm", lambda m: f"{PW}: {{{{resolve:secretsmanager:x}}}}", False),
    ("placeholder-elision", lambda m: f"PKI_{PW.upper()}='...' python -m scripts.pki export-pfx beacon1", False),
    ("placeholder-mask", lambda m: json.dumps({PW: "********"}), False),
    ("variable", lambda m: f"${PW} = $generated", False),
    ("variable-member", lambda m: f"${PW} = $secret.SecretString", False),
    ("variable-subexpression", lambda m: f'${PW} = "$($account.secret)"', False),
    ("variable-parameter", lambda m: f"-{PW.capitalize()} $secure", False),
    ("null", lambda m: f"${PW} = $null", False),
    ("expression-bare", lambda m: f"${PW} = [Text.Encoding]::UTF8.GetString($bytes)", False),
    ("splat-bare", lambda m: f"${PW} = @(Get-Content x)", False),
    ("env-var-bare", lambda m: f"set {PW}=%DB_{PW.upper()}%", False),
    ("reference-quoted", lambda m: json.dumps({PW: "serverCertificate" + PW.capitalize() + "SecretArn"}), False),
    ("reference-bare", lambda m: f"{PW}: mappedAccount{PW.capitalize()}SecretArn", False),
    ("reference-key", lambda m: f"serverCertificate{PW.capitalize()}SecretArn: arn:aws:secretsmanager:us-east-1:1:secret:x",
     False),
    ("cmdlet", lambda m: f"${PW} = New-Random{PW.capitalize()}", False),
    ("cmdlet-with-arguments", lambda m: f"${PW} = Read-Host -AsSecureString", False),
    ("cmdlet-in-escaped-json", lambda m: json.dumps({"content": json.dumps({"runCommand": [
        f"${PW} = New-Random{PW.capitalize()}"]})}), False),
    ("cmdlet-switch", lambda m: f"Set-LocalUser -Name x -{PW.capitalize()}NeverExpires $true", False),
    ("keyword-required", lambda m: f"{PW}: required", False),
    ("keyword-true", lambda m: f"{PW}: true", False),
    ("empty-single", lambda m: f"{PW} = ''", False),
    ("empty-json", lambda m: json.dumps({PW: ""}), False),
    ("pulumi-secure-config", lambda m: f"config:\n  flexnet-beacon:db{PW.capitalize()}:\n    secure: AAABAKxyz\n", False),
    ("prose", lambda m: f"The PFX {PW} never leaves the instance.", False),
    ("certificate-pem", lambda m: m["cert_pem"], False),
    ("certificate-base64", lambda m: m["cert_b64"], False),
    ("certificate-base64-json", lambda m: json.dumps({"certificate": m["cert_b64"]}), False),
    ("public-key-base64", lambda m: m["spki_b64"], False),
    ("rsa-public-key-base64", lambda m: m["rsa_spki_b64"], False),
]

_POLICY_KINDS = {
    "a PEM ": secret_patterns.PRIVATE_KEY,
    "a base64 PKCS#12/PFX blob": secret_patterns.PKCS12_BLOB,
    "a password set to a literal": secret_patterns.PASSWORD_LITERAL,
    "a URL with a user and password": secret_patterns.URL_CREDENTIALS,
}


def _policy_kinds(text: str) -> list[str]:
    return [next(kind for prefix, kind in _POLICY_KINDS.items() if message.startswith(prefix))
            for message in rules.find_secret_material(text)]


@pytest.mark.parametrize("build, secret", [pytest.param(b, s, id=i) for i, b, s in SAMPLES])
def test_policy_and_scan_flag_the_same_samples(material: Material, build: Callable[[Material], str], secret: bool) -> None:
    text = build(material)
    policy = rules.find_secret_material(text)
    scanned = scan(text, "sample.txt")
    assert bool(policy) is bool(scanned) is secret, (policy, scanned)
    assert _policy_kinds(text) == [f.kind for f in scanned]
    # Neither quotes the material in a way that gives it away: the policy names kind and line only.
    assert not any(material["token"] in message for message in policy)


def test_sample_table_covers_every_kind(material: Material) -> None:
    kinds = {f.kind for _, build, secret in SAMPLES if secret for f in scan(build(material), "sample.txt")}
    assert kinds == {secret_patterns.PRIVATE_KEY, secret_patterns.PKCS12_BLOB, secret_patterns.PASSWORD_LITERAL, secret_patterns.URL_CREDENTIALS}


def test_policy_reports_kind_and_line(material: Material) -> None:
    text = "\n".join([material["encrypted"].rstrip("\n"), material["pfx"], f"{PW}: {material['token']}"])
    lines = len(material["encrypted"].splitlines())
    assert rules.find_secret_material(text) == [
        "a PEM ENCRYPTED private key (line 1)",
        f"a base64 PKCS#12/PFX blob (line {lines + 1})",
        f"a password set to a literal (line {lines + 2})",
    ]


def test_python_source_counts_only_quoted_values_as_literals(material: Material) -> None:
    """In *.py files an unquoted value is an expression; quoted ones are still literals."""
    code = "\n".join([
        f"def load({PW}: bytes) -> None:",
        f"    {PW} = read_{PW}()",
        f"    if not {PW}:",
        "        raise SystemExit(1)",
        f"    ctx.load_cert_chain(cert, key, {PW}=_no_{PW})",
    ])
    assert scan(code, "module.py") == []
    assert [f.kind for f in scan(code, "notes.txt")]  # the same text as YAML/PowerShell would be literals
    quoted = f'env = {{"PKI_{PW.upper()}": "{material["token"]}"}}'
    assert [f.kind for f in scan(quoted, "module.py")] == [secret_patterns.PASSWORD_LITERAL]
    assert [f.kind for f in scan(material["pkcs8"] + material["pfx"], "module.py")] == [
        secret_patterns.PRIVATE_KEY, secret_patterns.PKCS12_BLOB]
