"""The IIS, HTTP.sys and SChannel state a beacon must have, as plain data (no Pulumi).

components/iis/windows/Set-BeaconMtls.ps1 reads this JSON and converges the machine to it; the
offline plan writes it to build/plan/<stack>/iis-state.json and renders `appcmd.txt`, the
equivalent commands an administrator would type (the manual article, step by step).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from ..config import BeaconConfig
from .mapping_rules import MappingRule, allow_mappings, deny_mappings, parse_rule
from ..certs.trust import ClientTrust, LoadedCertificate

SCHEMA_VERSION = 1
IIS_APP_ID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"
AGENT_APPLICATIONS = ("ManageSoftDL", "ManageSoftRL")
SSL_FLAGS = "Ssl,SslNegotiateCert,SslRequireCert"
# observe: certificates are negotiated (and mapped when they match) but not required.
SSL_FLAGS_OBSERVE = "Ssl,SslNegotiateCert"
# W3C fields IIS writes for every request (logExtFileFlags), the status and sub-status among them,
# and the client certificate's facts as custom fields from server variables (docs/operations.md
# "Moving a fleet to mutual TLS"; scripts/ops/readiness.py reads them).
LOG_FIELDS = (
    "Date", "Time", "ClientIP", "UserName", "SiteName", "ServerIP", "Method", "UriStem", "UriQuery",
    "HttpStatus", "HttpSubStatus", "Win32Status", "BytesSent", "BytesRecv", "TimeTaken", "ServerPort",
    "UserAgent", "Host",
)
LOG_CUSTOM_FIELDS = (
    ("crt-subject", "CERT_SUBJECT"),
    ("crt-issuer", "CERT_ISSUER"),
    ("crt-serial", "CERT_SERIALNUMBER"),
    ("crt-flags", "CERT_FLAGS"),
)
FLEXERA_EXTENSIONS = (".osd", ".npl", ".nds", ".ini")
# IIS's static file handler serves no extension without a MIME map (404.3), and Flexera documents
# none of its own for these files (their formats: .npl policy and .osd/.nds package and schedule
# files, XML text, FlexNet inventory agent reference "NPL/OSD/NDS file format"). The converge run
# adds each at the site only where IIS does not already apply one (docs/iis-mtls.md). Sent as
# bytes: agents parse the files themselves and no browser should render them.
AGENT_FILE_MIME_TYPE = "application/octet-stream"

# Role services the beacon needs, each with the reason it is here (docs/iis-mtls.md cites the
# sources). Flexera's inventory beacon prerequisites ask for "IIS 7.0 (or later), with ASP.NET 4.5
# (or later)" (https://docs.flexera.com/flexera/EN/ITAssets/PrerequisitesForInvBeacons.htm,
# Prerequisite Software; IIS Role Requirements); ASP.NET 4.5 brings its own required role
# services. The rest is what this deployment configures itself.
# components/iis/windows/user-data.ps1 lists the same names (a test keeps them equal).
IIS_FEATURE_REASONS = {
    "Web-Server": "Flexera: IIS 7.0 or later (the Web Server role)",
    "Web-WebServer": "Flexera: IIS 7.0 or later (the web server itself)",
    "Web-Default-Doc": "IIS default role service of Web-Server, kept for the beacon's web applications",
    "Web-Static-Content": "IIS default role service: agents download policy and packages from ManageSoftDL as static files",
    "Web-Http-Errors": "IIS default role service: status pages",
    "Web-Http-Logging": "IIS default role service: the IIS log tells 403.16 from 401.2 (sc-status, sc-substatus)",
    "Web-Filtering": "request filtering: the Flexera file types .osd .npl .nds .ini are allowed there",
    "Web-Cert-Auth": "IIS Client Certificate Mapping Authentication (not Web-Client-Auth: that is the Active Directory mapping)",
    "Web-Asp-Net45": "Flexera: ASP.NET 4.5 or later",
    "Web-Net-Ext45": "required by Web-Asp-Net45 (.NET extensibility 4.5)",
    "Web-ISAPI-Ext": "required by Web-Asp-Net45 (ISAPI extensions)",
    "Web-ISAPI-Filter": "required by Web-Asp-Net45 (ISAPI filters)",
    "Web-Scripting-Tools": "the WebAdministration module the converge script uses",
}
IIS_FEATURES = tuple(IIS_FEATURE_REASONS)
# WebDAV answers PUT/MOVE itself and breaks uploads to ManageSoftRL.
REMOVED_FEATURES = ("Web-DAV-Publishing",)

# With anonymous authentication off, IIS runs static file access (ManageSoftDL downloads) and
# the upload handler's file access (ManageSoftRL) as the mapped account unless told otherwise.
# UseWorkerProcessUser: the application pool identity does the file work, as it does for the
# beacon's own anonymous configuration; the mapped account only authenticates. serverRuntime is locked
# at applicationHost.config (overrideModeDefault Deny), so it is written with a location path.
AUTHENTICATED_USER_OVERRIDE = "UseWorkerProcessUser"

# SChannel sends at most 16 KB of trusted issuer names in the CertificateRequest; beyond that it
# cannot send the list (Microsoft: What's new in TLS/SSL, Windows Server 2012). Keep a margin.
TRUSTED_ISSUER_LIST_LIMIT = 12 * 1024


def _certificate_entry(cert: LoadedCertificate, store: str) -> dict[str, str]:
    return {"store": store, "thumbprint": cert.thumbprint, "subject": cert.subject, "pem": cert.pem}


def trust_stores(trust: ClientTrust, exclusive: bool) -> list[dict[str, str]]:
    entries = [_certificate_entry(c, "Root") for c in trust.roots]
    entries += [_certificate_entry(c, "CA") for c in trust.intermediates]
    if exclusive:
        entries += [_certificate_entry(c, "ClientAuthIssuer") for c in trust.issuing]
    return entries


def trusted_issuer_list_bytes(trust: ClientTrust) -> int:
    """Bytes of the distinguished names SChannel would send for the ClientAuthIssuer store (2-byte length each)."""
    return sum(len(ca.certificate.subject.public_bytes()) + 2 for ca in trust.issuing)


def send_trusted_issuer_list(trust: ClientTrust, exclusive: bool) -> bool:
    """SendTrustedIssuerList: on with exclusive CA trust (ClientAuthIssuer holds only the issuing
    CAs, so the list names exactly the CAs a device certificate must come from and helps a client
    with several certificates choose), off without it (the list would be every root of the
    machine) and off when the names would not fit the handshake."""
    return exclusive and bool(trust.issuing) and trusted_issuer_list_bytes(trust) <= TRUSTED_ISSUER_LIST_LIMIT


# manyToOneMappings is keyed by name: IIS refuses a second mapping of the same name (compared
# case-insensitively), so the converge run would fail on every run from then on.
MAPPING_NAME_LIMIT = 128
# The converge script addresses a mapping as add[@name='...'] and refuses ' [ ] and control characters.
_NAME_REFUSED = re.compile(r"['\[\]\x00-\x1f\x7f-\x9f]")


def mapping_name(text: str, suffix: str = "") -> str:
    """IIS mapping names are keys the converge script addresses as add[@name='...']: no quotes,
    brackets or control characters, at most MAPPING_NAME_LIMIT characters. The text is cut, never
    the suffix, so a suffix that tells two mappings apart survives a long CN."""
    suffix = _NAME_REFUSED.sub("", suffix)
    return _NAME_REFUSED.sub("", text)[: MAPPING_NAME_LIMIT - len(suffix)] + suffix


def thumbprint_suffix(thumbprint: str) -> str:
    """' (3FA2C1D9)': the first 8 hex digits of the issuing CA's SHA-1 thumbprint, upper case."""
    return f" ({thumbprint[:8].upper()})"


class MappingNameClash(ValueError):
    """Two many-to-one mappings would still share a name after the thumbprint suffix (it takes
    a CN built to look like another CA's suffixed name, or an 8-digit thumbprint prefix shared
    by two CAs of one CN). One line, naming the CN; stack.prepare turns it into a config issue."""

    def __init__(self, name: str, issuer_cn: str, source: str) -> None:
        self.name = name
        self.issuer_cn = issuer_cn
        self.source = source
        super().__init__(
            f"issuing CAs whose IIS many-to-one mapping names differ (compared case-insensitively): "
            f"{name!r} would name two mappings (issuing CA CN {issuer_cn!r})"
        )


@dataclass(frozen=True)
class MappingCandidate:
    """One many-to-one mapping before it is named, with the issuing CA it was built for."""

    label: str  # "Agents - <CN>" or "Deny <n> - <CN>", before sanitising
    permission_mode: str  # Allow | Deny
    description: str
    rules: tuple[MappingRule, ...]
    issuer: LoadedCertificate

    @property
    def issuer_cn(self) -> str:
        return self.rules[0].match_criteria


def distinct_mappings(candidates: Sequence[MappingCandidate]) -> list[MappingCandidate]:
    """Candidates with the same permissionMode and rules are one mapping for IIS (two issuing CAs
    with one CN, and one O when the Issuer rule matches it: a re-keyed CA): the first one stays."""
    seen: set[tuple[str, tuple[MappingRule, ...]]] = set()
    kept: list[MappingCandidate] = []
    for candidate in candidates:
        key = (candidate.permission_mode, candidate.rules)
        if key not in seen:
            seen.add(key)
            kept.append(candidate)
    return kept


def mapping_names(candidates: Sequence[MappingCandidate]) -> list[str]:
    """One unique name per (distinct) candidate, in order.

    A name shared by no other candidate (case-insensitively, after sanitising and truncation) is
    kept as it is, so stacks without a collision keep their names. Every candidate of a shared
    name gets its issuing CA's :func:`thumbprint_suffix`, so each name depends only on its own CA,
    not on which CA sorts first. A name still shared after that raises MappingNameClash.
    """
    bases = [mapping_name(c.label) for c in candidates]
    shared = Counter(base.casefold() for base in bases)
    names = [
        mapping_name(c.label, thumbprint_suffix(c.issuer.thumbprint)) if shared[base.casefold()] > 1 else base
        for c, base in zip(candidates, bases)
    ]
    taken: set[str] = set()
    for candidate, name in zip(candidates, names):
        if name.casefold() in taken:
            raise MappingNameClash(name, candidate.issuer_cn, candidate.issuer.source)
        taken.add(name.casefold())
    return names


def mapping_candidates(
    trust: ClientTrust, extra_rules: Sequence[str], deny_rules: Sequence[str], include_organization: bool = False
) -> list[MappingCandidate]:
    """Deny candidates first (IIS uses the first mapping that matches), then one Allow per issuing CA.

    The rule lists come from components/iis/mapping_rules.py, the same code `pki check` predicts verdicts with.
    """
    extras = [parse_rule(text) for text in extra_rules]
    denies = [parse_rule(text) for text in deny_rules]
    candidates: list[MappingCandidate] = []
    for ca in trust.issuing:
        for number, rules in enumerate(deny_mappings([ca.certificate], denies, include_organization), start=1):
            cn = rules[0].match_criteria
            candidates.append(
                MappingCandidate(
                    f"Deny {number} - {cn}", "Deny", f"Deny devices of {cn} matching {rules[-1]}"[:256], tuple(rules), ca
                )
            )
    for ca in trust.issuing:
        for rules in allow_mappings([ca.certificate], extras, include_organization):
            cn = rules[0].match_criteria
            candidates.append(
                MappingCandidate(
                    f"Agents - {cn}", "Allow", f"FlexNet agents with a certificate issued by {cn}"[:256], tuple(rules), ca
                )
            )
    return candidates


def many_to_one_mappings(
    trust: ClientTrust, extra_rules: Sequence[str], deny_rules: Sequence[str], include_organization: bool = False
) -> list[dict[str, Any]]:
    """The manyToOneMappings collection: the distinct candidates (:func:`mapping_candidates`),
    each under a unique name (:func:`mapping_names`)."""
    candidates = distinct_mappings(mapping_candidates(trust, extra_rules, deny_rules, include_organization))
    return [
        {
            "name": name,
            "description": c.description,
            "enabled": True,
            "permissionMode": c.permission_mode,
            "rules": [rule.as_iis() for rule in c.rules],
        }
        for c, name in zip(candidates, mapping_names(candidates))
    ]


def one_to_one_mappings(certificates: Sequence[LoadedCertificate]) -> list[dict[str, Any]]:
    import base64

    from cryptography.hazmat.primitives import serialization

    return [
        {
            "thumbprint": cert.thumbprint,
            "subject": cert.subject,
            "enabled": True,
            # IIS stores the certificate as base64 DER without PEM armour or line breaks.
            "certificate": base64.b64encode(cert.certificate.public_bytes(serialization.Encoding.DER)).decode("ascii"),
        }
        for cert in sorted(certificates, key=lambda c: c.thumbprint)
    ]


def converge_log_group(cfg: BeaconConfig) -> str:
    return f"/flexnet-beacon/{cfg.stack}/converge"


def iis_log_group(cfg: BeaconConfig) -> str:
    """The beacons' IIS W3C logs (the CloudWatch agent ships them; `ops readiness` reads them)."""
    return f"/flexnet-beacon/{cfg.stack}/iis"


def desired_state(
    cfg: BeaconConfig, trust: ClientTrust, one_to_one: Sequence[LoadedCertificate] = (), crl_urls: Sequence[str] = ()
) -> dict[str, Any]:
    site = cfg.iis_site_name
    many_to_one = cfg.mapping_mode == "many-to-one"
    server_certificate = None
    if cfg.server_certificate_secret_arn:
        server_certificate = {
            "pfxSecretArn": cfg.server_certificate_secret_arn,
            "passwordSecretArn": cfg.server_certificate_password_secret_arn,
            "store": "My",
        }
    return {
        "schemaVersion": SCHEMA_VERSION,
        "stack": cfg.stack,
        "region": cfg.region,
        "reportOnly": cfg.converge_report_only,
        "enforcement": cfg.enforcement,
        # The converge report also goes to this log group (stream = computer name).
        "logGroupName": converge_log_group(cfg),
        # Checked for reachability from the beacon on every run (403.13 when unreachable).
        "crlUrls": list(crl_urls or cfg.crl_urls),
        "features": {"install": list(IIS_FEATURES), "remove": list(REMOVED_FEATURES)},
        "site": {
            "name": site,
            "httpsPort": 443,
            # Locked sections are written at MACHINE/WEBROOT/APPHOST with these location paths;
            # both agent applications get exactly the site's authentication (else uploads 409).
            "locations": [site] + [f"{site}/{app}" for app in AGENT_APPLICATIONS],
        },
        "serverCertificate": server_certificate,
        "httpSys": {
            "ipPort": "0.0.0.0:443",
            "appId": IIS_APP_ID,
            "certStoreName": "MY",
            "clientCertNegotiation": True,  # TLS 1.3 has no renegotiation: ask for the certificate in the handshake
            "verifyClientCertRevocation": cfg.revocation_checking,
            "verifyRevocationWithCachedClientCertOnly": False,
            "usageCheck": True,
            "revocationFreshnessTime": 0,
            "urlRetrievalTimeout": 15000,
            "sslCtlStoreName": "ClientAuthIssuer" if cfg.exclusive_client_trust else None,
        },
        # Both are read by SChannel at start-up: a change is followed by a restart (exit 3010).
        "schannel": {
            "clientAuthTrustMode": cfg.client_auth_trust_mode,
            "sendTrustedIssuerList": send_trusted_issuer_list(trust, cfg.exclusive_client_trust),
        },
        "trustStores": trust_stores(trust, cfg.exclusive_client_trust),
        # require: a device without a mapped certificate gets nothing (403.7 / 401.2). observe: the
        # certificate is asked for and mapped when it matches, and everything else is served
        # anonymously as before; IIS still validates a certificate a device does present
        # (403.16/403.17/403.13 for a bad one, as in require: docs/operations.md).
        "access": {"sslFlags": SSL_FLAGS if cfg.enforcement == "require" else SSL_FLAGS_OBSERVE},
        "authentication": {
            "anonymousEnabled": cfg.enforcement == "observe",
            "clientCertificateMapping": {
                "enabled": True,
                "manyToOneCertificateMappingsEnabled": many_to_one,
                "oneToOneCertificateMappingsEnabled": not many_to_one,
                "manyToOneMappings": (
                    many_to_one_mappings(trust, cfg.extra_mapping_rules, cfg.deny_mapping_rules, cfg.issuer_rule_match_organization)
                    if many_to_one
                    else []
                ),
                "oneToOneMappings": one_to_one_mappings(one_to_one) if not many_to_one else [],
            },
        },
        "mappedAccount": {
            "type": cfg.mapped_account_type,
            "name": cfg.mapped_account_name,
            "domain": cfg.mapped_account_domain or None,
            # Local: the password is generated on the instance when the account is created and never
            # leaves it; later runs reuse the one the mappings hold (docs/iis-mtls.md).
            "passwordSecretArn": cfg.mapped_account_password_secret_arn or None,
        },
        "requestFiltering": {"allowExtensions": list(FLEXERA_EXTENSIONS)},
        "staticContent": {"mimeMaps": [{"fileExtension": ext, "mimeType": AGENT_FILE_MIME_TYPE} for ext in FLEXERA_EXTENSIONS]},
        # Server-wide W3C logging (sites/siteDefaults/logFile): the fields are added to what is
        # there, never removed; the certificate fields are custom fields from server variables.
        "logging": {
            "fields": list(LOG_FIELDS),
            "customFields": [{"logFieldName": name, "sourceName": source, "sourceType": "ServerVariable"} for name, source in LOG_CUSTOM_FIELDS],
        },
        # File access of downloads and uploads as the worker process, not as the mapped account.
        "serverRuntime": {
            "authenticatedUserOverride": AUTHENTICATED_USER_OVERRIDE,
            "locations": [f"{site}/{app}" for app in AGENT_APPLICATIONS],
        },
        "beaconInstaller": (
            {
                "s3Uri": cfg.beacon_installer_s3_uri,
                "sha256": cfg.beacon_installer_sha256,
                "arguments": list(cfg.beacon_installer_arguments),
            }
            if cfg.beacon_installer_s3_uri
            else None
        ),
        # Flexera One registers a beacon with a configuration file made for it in IT Asset
        # Management ("do not share these files between inventory beacons") and imported in
        # FlexNet Beacon; no unattended import is documented. The converge run stages each
        # beacon's own file, read from this secret name plus the instance id, for that one step.
        "beaconRegistration": (
            {"secretNamePrefix": f"{cfg.name_prefix}beacon-registration/"} if cfg.beacon_registration else None
        ),
    }
