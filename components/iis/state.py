"""The IIS, HTTP.sys and SChannel state a beacon must have, as plain data (no Pulumi).

components/iis/windows/Set-BeaconMtls.ps1 reads this JSON and converges the machine to it; the
offline plan writes it to build/plan/<stack>/iis-state.json and renders `appcmd.txt`, the
equivalent commands an administrator would type (the manual article, step by step).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from ..config import BeaconConfig
from .mapping_rules import allow_mappings, deny_mappings, parse_rule
from ..certs.trust import ClientTrust, LoadedCertificate

SCHEMA_VERSION = 1
IIS_APP_ID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"
AGENT_APPLICATIONS = ("ManageSoftDL", "ManageSoftRL")
SSL_FLAGS = "Ssl,SslNegotiateCert,SslRequireCert"
FLEXERA_EXTENSIONS = (".osd", ".npl", ".nds", ".ini")

# Role services the beacon needs (Flexera beacon prerequisites + client certificate mapping).
IIS_FEATURES = (
    "Web-Server",
    "Web-WebServer",
    "Web-Default-Doc",
    "Web-Static-Content",
    "Web-Http-Errors",
    "Web-Http-Logging",
    "Web-Filtering",
    "Web-Cert-Auth",  # IIS Client Certificate Mapping Authentication (not Web-Client-Auth: that is AD mapping)
    "Web-Asp-Net45",
    "Web-Net-Ext45",
    "Web-ISAPI-Ext",
    "Web-ISAPI-Filter",
    "Web-Scripting-Tools",  # the WebAdministration module the converge script uses
)
REMOVED_FEATURES = ("Web-DAV-Publishing",)


def _certificate_entry(cert: LoadedCertificate, store: str) -> dict[str, str]:
    return {"store": store, "thumbprint": cert.thumbprint, "subject": cert.subject, "pem": cert.pem}


def trust_stores(trust: ClientTrust, exclusive: bool) -> list[dict[str, str]]:
    entries = [_certificate_entry(c, "Root") for c in trust.roots]
    entries += [_certificate_entry(c, "CA") for c in trust.intermediates]
    if exclusive:
        entries += [_certificate_entry(c, "ClientAuthIssuer") for c in trust.issuing]
    return entries


def mapping_name(text: str) -> str:
    """IIS mapping names are keys the converge script addresses as add[@name='...']: no quotes or brackets."""
    return re.sub(r"['\[\]\x00-\x1f]", "", text)[:128]


def many_to_one_mappings(
    trust: ClientTrust, extra_rules: Sequence[str], deny_rules: Sequence[str], include_organization: bool = False
) -> list[dict[str, Any]]:
    """Deny mappings first (IIS uses the first mapping that matches), then one Allow per issuing CA.

    The rule lists come from components/iis/mapping_rules.py, the same code `pki check` predicts verdicts with.
    """
    issuing = [ca.certificate for ca in trust.issuing]
    mappings: list[dict[str, Any]] = []
    denies = deny_mappings(issuing, [parse_rule(text) for text in deny_rules], include_organization)
    for number, rules in enumerate(denies):
        cn, deny_rule = rules[0].match_criteria, rules[-1]
        mappings.append(
            {
                "name": mapping_name(f"Deny {number % max(len(deny_rules), 1) + 1} - {cn}"),
                "description": f"Deny devices of {cn} matching {deny_rule}"[:256],
                "enabled": True,
                "permissionMode": "Deny",
                "rules": [rule.as_iis() for rule in rules],
            }
        )
    for rules in allow_mappings(issuing, [parse_rule(text) for text in extra_rules], include_organization):
        cn = rules[0].match_criteria
        mappings.append(
            {
                "name": mapping_name(f"Agents - {cn}"),
                "description": f"FlexNet agents with a certificate issued by {cn}"[:256],
                "enabled": True,
                "permissionMode": "Allow",
                "rules": [rule.as_iis() for rule in rules],
            }
        )
    return mappings


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
        "schannel": {"clientAuthTrustMode": cfg.client_auth_trust_mode},
        "trustStores": trust_stores(trust, cfg.exclusive_client_trust),
        "access": {"sslFlags": SSL_FLAGS},
        "authentication": {
            "anonymousEnabled": False,
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
            # Local: the password is generated on the instance and never leaves it.
            "passwordSecretArn": cfg.mapped_account_password_secret_arn or None,
        },
        "requestFiltering": {"allowExtensions": list(FLEXERA_EXTENSIONS)},
        "beaconInstaller": (
            {
                "s3Uri": cfg.beacon_installer_s3_uri,
                "sha256": cfg.beacon_installer_sha256,
                "arguments": list(cfg.beacon_installer_arguments),
            }
            if cfg.beacon_installer_s3_uri
            else None
        ),
    }
