"""What the CA checks before it signs: it refuses to issue what a relying party would reject.

- The issuing CA itself: its key belongs to its certificate (store.Pki.issuing), it is within its
  validity, with an intermediate it is signed by root.pem and not revoked: neither in index.json
  nor in the root's CRL (root-crl.pem, when its signature verifies). A revoked intermediate makes
  every certificate under it fail (IIS 403.13 / 403.16).
- A new certificate's subject: never a CA's subject (the leaf would look like the CA, or like a
  self-signed certificate, to chain building).

Every refusal is a store.PkiError: one line, exit 2, nothing issued.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from components.certs import facts as cert_facts

from .inputs import now_utc
from .store import Pki, PkiError


def check_validity(ca_cert: x509.Certificate, label: str = "the issuing CA") -> None:
    """Refuse to sign with a CA outside its validity."""
    name = cert_facts.common_name(ca_cert.subject) or ca_cert.subject.rfc4514_string()
    now = now_utc()
    if ca_cert.not_valid_after_utc <= now:
        raise PkiError(f"{label} {name!r} expired {cert_facts.iso(ca_cert.not_valid_after_utc)}: it cannot issue certificates")
    if ca_cert.not_valid_before_utc > now:
        raise PkiError(f"{label} {name!r} is not valid before {cert_facts.iso(ca_cert.not_valid_before_utc)}: certificates it issues now would be refused (403.17)")


def check_issuer(pki: Pki, ca_cert: x509.Certificate) -> None:
    """Refuse to sign with an issuing CA that relying parties would reject."""
    name = cert_facts.common_name(ca_cert.subject) or ca_cert.subject.rfc4514_string()
    check_validity(ca_cert)
    if not pki.intermediate():
        return
    issuing = pki.index.get("authorities", {}).get("issuing") or {}
    if issuing.get("status") == "revoked":
        raise PkiError(
            f"the issuing CA {name!r} (serial {issuing.get('serial')}) is revoked ({issuing.get('revokedAt')}, {issuing.get('reason') or 'unspecified'}): "
            "relying parties reject everything it signs (IIS 403.13); make a new CA with init-ca in another --dir"
        )
    root = _root_certificate(pki)
    if root is None:
        return
    try:
        ca_cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise PkiError(f"{pki.ca_pem} is not signed by {pki.root_pem}: the chain is broken and everything issued would be untrusted (403.16); restore the CA files") from None
    listed = _root_crl_entry(pki, root, ca_cert.serial_number)
    if listed is not None:
        raise PkiError(
            f"the issuing CA {name!r} (serial {cert_facts.serial_hex(ca_cert.serial_number)}) is listed in the root's CRL "
            f"{pki.root_crl_pem} (revoked {cert_facts.iso(listed.revocation_date_utc)}): relying parties reject everything it signs (403.13); "
            "make a new CA with init-ca in another --dir"
        )


def _root_certificate(pki: Pki) -> x509.Certificate | None:
    return pki.load_cert(pki.root_pem) if pki.root_pem.is_file() else None


def _root_crl_entry(pki: Pki, root: x509.Certificate, serial: int) -> x509.RevokedCertificate | None:
    """The root CRL's entry for ``serial``, from root-crl.pem when it is the root's (signature
    verifies); None otherwise (absent, unreadable or forged files say nothing)."""
    if not pki.root_crl_pem.is_file():
        return None
    try:
        crls = cert_facts.read_crls(pki.root_crl_pem)
    except (OSError, ValueError):
        return None
    for crl in crls:
        try:
            if crl.issuer != root.subject or not crl.is_signature_valid(root.public_key()):  # type: ignore[arg-type]
                continue
        except (TypeError, ValueError):
            continue
        found = crl.get_revoked_certificate_by_serial_number(serial)
        if found is not None:
            return found
    return None


def ca_subjects(pki: Pki) -> dict[str, str]:
    """Normalised subject -> file, of the CA certificates of the PKI."""
    found: dict[str, str] = {}
    for path in (pki.ca_pem, pki.root_pem, pki.server_ca_pem):
        if path.is_file():
            found[_normalised(pki.load_cert(path).subject)] = path.name
    return found


def _normalised(name: x509.Name) -> str:
    return name.rfc4514_string().casefold()


def check_subject(subject: x509.Name, cas: dict[str, str], what: str) -> None:
    """Refuse a leaf whose subject is a CA's subject (compared case-insensitively)."""
    found = cas.get(_normalised(subject))
    if found is not None:
        raise PkiError(
            f"{what}: subject {subject.rfc4514_string()!r} is the subject of the CA ({found}): relying parties would take the "
            "certificate for the CA (or for a self-signed one) and reject it; choose another name"
        )
