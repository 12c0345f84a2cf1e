"""What a valid stack configuration is: value checks and one validator per concern.

`components.config` parses the raw Pulumi strings, then runs `VALIDATORS` over the typed values
and assembles `BeaconConfig`; it re-exports the public checks here (``hostname_problem`` and
friends), so callers keep importing them from `components.config`.

This module imports nothing from `components.config` (config imports it), so there is no cycle:
a validator gets everything it needs, the parsed values included, through `Checks`.

A value check returns an expectation string when the value is bad, else None. A validator
reports each problem through `Checks.bad` as (key, value, expectation).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .network.flexera import FLEXERA_REGIONS

# Egress groups the firewall's domain allowlist is built from (components/network/egress.py).
EGRESS_GROUPS = ("crl", "flexera-parent", "aws-endpoints", "windows-update", "windows-extras")
# Groups that are off unless their switch is on (the others are on unless egressDisabledGroups names them).
OPT_IN_GROUPS = {"windows-extras": "windowsExtrasEgress"}
# The key holding each group's extra domains, in the order they are checked.
EGRESS_DOMAIN_KEYS = {
    "crl": "crlDomains",
    "flexera-parent": "flexeraParentDomains",
    "aws-endpoints": "awsEndpointsExtraDomains",
    "windows-update": "windowsUpdateExtraDomains",
}

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
    2557, 2922, 3288, 3653,
)

RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


# --- value checks: each returns an expectation string when bad, else None ---------------------

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def hostname_problem(name: str) -> str | None:
    if not isinstance(name, str) or not name:
        return "a DNS host name like beacon.example.com"
    if "://" in name or "/" in name:
        return "a bare host name, not a URL (drop the scheme and path)"
    host = name.lower()
    if len(host) > 253:
        return "a host name of at most 253 characters"
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(lbl) for lbl in labels):
        return "a DNS host name like beacon.example.com (letters, digits, hyphens; at least two labels)"
    if labels[-1].isdigit():
        return "a DNS name, not an IP address"
    return None


def domain_problem(name: str) -> str | None:
    """Network Firewall domain list entry: 'host.example.com' or '.example.com' (and subdomains)."""
    if not isinstance(name, str) or not name:
        return "a domain like crl.example.com or .example.com"
    if "*" in name:
        return "no wildcards: write '.example.com' for a domain and all its subdomains"
    body = name[1:] if name.startswith(".") else name
    problem = hostname_problem(body)
    if problem:
        return problem.replace("host name", "domain")
    return None


_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def redact_userinfo(url: str) -> str:
    """The URL with any user information before the host replaced by '***' (for messages)."""
    scheme, sep, rest = url.partition("://")
    authority_end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority = rest[:authority_end]
    if not sep or "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{rest[authority_end:]}"


def url_host_problem(url: str) -> tuple[str | None, str | None]:
    """For a CRL/AIA URL: (host, None) or (None, expectation)."""
    from urllib.parse import urlsplit

    if not isinstance(url, str):
        return None, "an http:// or https:// URL"
    # urlsplit silently drops tabs/newlines and leading blanks; insist on RFC 3986 characters.
    if not _URL_CHARS.fullmatch(url):
        return None, "an http:// or https:// URL of RFC 3986 characters (no spaces, quotes or control characters; percent-encode them)"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port  # raises on a bad port
    except ValueError:
        return None, "an http:// or https:// URL with a valid host and port"
    if "@" in parts.netloc:  # user information: public CRL/AIA URLs need none, and it would be copied into every output
        return None, "a URL without user information (no user@ or user:password@ before the host: CRLs and CA certificates are public)"
    if port == 0:
        return None, "an http:// or https:// URL whose port is 1 to 65535 (or none)"
    if parts.scheme == "ldap":
        return None, "an http:// URL: ldap:// CDPs cannot pass the firewall's domain filter; publish the CRL over http"
    if parts.scheme not in ("http", "https") or not host:
        return None, "an http:// or https:// URL"
    problem = hostname_problem(host)
    if problem:
        return None, f"a URL whose host is a DNS name (the firewall filters egress by name): {problem}"
    return host, None


def _cidr(value: str) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except (ValueError, TypeError):
        return None
    if str(net) != value:  # '10.0.0.1' (no prefix) or '10.0.0.0/255.0.0.0': AWS wants a.b.c.d/n
        return None
    return net if isinstance(net, ipaddress.IPv4Network) else None


_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):"
    r"(?P<account>[0-9]{12}|aws):(?P<resource>[A-Za-z0-9_+=,.@:/-]+)"
)


def arn_problem(value: str, service: str, region: str | None, resource_prefix: str = "") -> str | None:
    m = _ARN.fullmatch(value)
    what = f"an ARN like arn:aws:{service}:{region or ''}:123456789012:{resource_prefix or '...'}"
    if not m or m["service"] != service:
        return what
    if region is not None and m["region"] != region:
        return f"{what} (in the stack's region {region})" if region else f"{what} (a global ARN: empty region field)"
    if resource_prefix and not m["resource"].startswith(resource_prefix):
        return what
    return None


def secret_arn_problem(value: str, region: str | None, name_prefix: str) -> str | None:
    """A Secrets Manager ARN in the region whose name starts with `name_prefix` (flexnet-beacon/<stack>/)."""
    problem = arn_problem(value, "secretsmanager", region, "secret:")
    if problem:
        return problem
    name = value.split(":secret:", 1)[1]
    if not name.startswith(name_prefix):
        return f"a secret named under {name_prefix} (the only secrets the beacon's role may read)"
    return None


_TAG_VALUE = re.compile(r"[\w\s.:/=+\-@]*", re.UNICODE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # \s admits tab/newline; AWS tag values do not
_INSTANCE_TYPE = re.compile(r"(?P<family>[a-z]+)(?P<gen>[0-9]+)(?P<attrs>[a-z-]*)\.(?P<size>[a-z0-9-]+)|u-[0-9]+tb[0-9]\.[a-z0-9]+")
_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]")


def instance_type_problem(value: str) -> str | None:
    m = _INSTANCE_TYPE.fullmatch(value or "")
    if not m:
        return "an EC2 instance type like m6i.large"
    # Graviton (ARM) families carry a 'g' after the generation digit (m6g, c7gn, t4g); a1 is ARM too.
    if m["family"] is None:  # high-memory u-*tb* (x86_64)
        return None
    if m["family"] == "mac":
        return "a non-Mac instance type: EC2 Mac instances run macOS only"
    if "g" in m["attrs"] or m["family"] == "a":
        return "an x86_64 instance type: Windows Server does not run on Graviton (ARM) instances"
    if m["size"] in ("nano", "micro", "small"):
        return "an instance type with at least 4 GiB of memory (medium or larger) for Windows, IIS and the beacon"
    return None


_SITE_NAME = re.compile(r"[^\\/?;:@&=+$,|\"<>\x00-\x1f\x7f]{1,64}")
_WINDOWS_USER = re.compile(r"[^\\/\[\]:;|=,+*?<>@\"\x00-\x1f\x7f]{1,20}")
_NETBIOS_OR_DNS = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,14}|([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.IGNORECASE)
_SCHEDULE = re.compile(r"rate\((?P<n>[0-9]{1,4}) (?P<unit>minutes?|hours?|days?)\)|cron\([0-9A-Za-z*?/,#\- ]{9,100}\)")
_CERT_PATH = re.compile(r"[A-Za-z0-9._/\- ]{1,255}")
_CERT_PATH_EXPECTED = "a certificate file path relative to the project (letters, digits, . _ - / and spaces; not absolute, no ..)"
_SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNSPECIFIED")


def _bad_cert_path(path: str) -> bool:
    return not _CERT_PATH.fullmatch(path) or ".." in path.split("/") or path.startswith("/")


# --- validators: one per concern ---------------------------------------------------------------

Report = Callable[[str, Any, str], None]


@dataclass(frozen=True)
class Checks:
    """What every validator gets: the typed values and where to report a problem."""

    values: Mapping[str, Any]  # key -> typed value (its default when unset); absent if it did not parse
    stack: str
    region: str | None  # as given (None or '' when unset), or None when not a region name; both reported
    name_prefix: str  # flexnet-beacon/<stack>/: the secrets the beacon's role may read
    bad: Report  # bad(key, value, expectation) records one problem

    def ok(self, name: str) -> bool:
        """The key parsed, so its value can be checked (a parse failure is already reported)."""
        return name in self.values


def checked_region(region: str | None, bad: Report) -> str | None:
    """aws:region: reports a missing or malformed region; a malformed one becomes None."""
    if not region:
        bad("aws:region", region or "", "an AWS region like us-east-1 (pulumi config set aws:region ...)")
    elif not _REGION.fullmatch(region):
        bad("aws:region", region, "an AWS region like us-east-1")
        return None
    return region


def _checked_vpc(c: Checks) -> ipaddress.IPv4Network | None:
    """vpcCidr as a network, or None (reported) when it is no usable private /16-/24 range."""
    if not c.ok("vpcCidr"):
        return None
    value = c.values["vpcCidr"]
    vpc = _cidr(value)
    if vpc is None:
        c.bad("vpcCidr", value, "an IPv4 CIDR with no host bits set, like 10.80.0.0/22")
    elif not any(vpc.subnet_of(p) for p in RFC1918):
        c.bad("vpcCidr", value, "a private (RFC 1918) range: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
        return None
    elif not 16 <= vpc.prefixlen <= 24:
        c.bad("vpcCidr", value, "a prefix between /16 (AWS maximum) and /24 (smallest that splits into 3 AZs of protected and /28 firewall subnets)")
        return None
    return vpc


def check_network(c: Checks) -> None:
    """vpcCidr, azCount, availabilityZones, avoidCidrs."""
    v, region = c.values, c.region
    vpc = _checked_vpc(c)
    if c.ok("azCount") and not 1 <= v["azCount"] <= 3:
        c.bad("azCount", v["azCount"], "an integer from 1 to 3")
    if c.ok("availabilityZones") and v["availabilityZones"]:
        zones = v["availabilityZones"]
        if c.ok("azCount") and len(zones) != v["azCount"]:
            c.bad("availabilityZones", zones, f"exactly azCount ({v['azCount']}) zone names")
        if len(set(zones)) != len(zones):
            c.bad("availabilityZones", zones, "distinct zone names")
        for zone in zones:
            if not (region and re.fullmatch(re.escape(region) + r"[a-z]", zone)):
                c.bad("availabilityZones", zone, f"a zone of the stack's region, like {region or 'us-east-1'}a")
    if c.ok("avoidCidrs"):
        for item in v["avoidCidrs"]:
            net = _cidr(item)
            if net is None:
                c.bad("avoidCidrs", item, "an IPv4 CIDR with no host bits set")
            elif vpc is not None and vpc.overlaps(net):
                c.bad("vpcCidr", str(vpc), f"a range that does not overlap avoidCidrs entry {item}")


def check_beacons(c: Checks) -> None:
    """beaconCount, beaconHostnames, instanceType, rootVolumeGb, amiId."""
    v = c.values
    if c.ok("beaconCount") and not 1 <= v["beaconCount"] <= 20:
        c.bad("beaconCount", v["beaconCount"], "an integer from 1 to 20")
    if c.ok("beaconHostnames") and v["beaconHostnames"]:
        names = v["beaconHostnames"]
        for name in names:
            problem = hostname_problem(name)
            if problem:
                c.bad("beaconHostnames", name, problem)
        if c.ok("beaconCount") and len(names) != v["beaconCount"]:
            c.bad("beaconHostnames", names, f"one host name per beacon (beaconCount = {v['beaconCount']})")
        if len({n.lower() for n in names}) != len(names):
            c.bad("beaconHostnames", names, "distinct host names")
    if c.ok("instanceType"):
        problem = instance_type_problem(v["instanceType"])
        if problem:
            c.bad("instanceType", v["instanceType"], problem)
    if c.ok("rootVolumeGb") and not 30 <= v["rootVolumeGb"] <= 16384:
        c.bad("rootVolumeGb", v["rootVolumeGb"], "an integer from 30 (the Windows AMI's snapshot size) to 16384")
    if c.ok("amiId") and v["amiId"] and not re.fullmatch(r"ami-[0-9a-f]{8}([0-9a-f]{9})?", v["amiId"]):
        c.bad("amiId", v["amiId"], "an AMI id like ami-0123456789abcdef0, or empty for the latest Windows Server 2022")


def check_egress(c: Checks) -> None:
    """allowedIngressCidrs, egressPorts, crlUrls, the egress groups' domains, egressDisabledGroups.

    (allowHttp needs no check beyond parsing; its warning is raised when the config is built.)
    """
    v = c.values
    if c.ok("allowedIngressCidrs"):
        cidrs = v["allowedIngressCidrs"]
        if not cidrs:
            c.bad("allowedIngressCidrs", cidrs, "at least one CIDR (0.0.0.0/0 admits agents anywhere)")
        for item in cidrs:
            if _cidr(item) is None:
                c.bad("allowedIngressCidrs", item, "an IPv4 CIDR with no host bits set, like 203.0.113.0/24")
        if len(set(cidrs)) != len(cidrs):
            c.bad("allowedIngressCidrs", cidrs, "no duplicate CIDRs")
    if c.ok("egressPorts"):
        ports = v["egressPorts"]
        if not ports:
            c.bad("egressPorts", ports, "at least one port (80 for CRLs over http, 443 for AWS APIs)")
        for port in ports:
            if not 1 <= port <= 65535:
                c.bad("egressPorts", port, "a TCP port from 1 to 65535")
        if len(set(ports)) != len(ports):
            c.bad("egressPorts", ports, "no duplicate ports")
    if c.ok("crlUrls"):
        for url in v["crlUrls"]:
            problem = url_host_problem(url)[1]
            if problem:
                c.bad("crlUrls", redact_userinfo(url), problem)
    for key_name in EGRESS_DOMAIN_KEYS.values():
        if c.ok(key_name):
            for item in v[key_name]:
                problem = domain_problem(item)
                if problem:
                    c.bad(key_name, item, problem)
    if c.ok("egressDisabledGroups"):
        for item in v["egressDisabledGroups"]:
            if item not in EGRESS_GROUPS:
                c.bad("egressDisabledGroups", item, f"one of {', '.join(EGRESS_GROUPS)}")
    if c.ok("flexeraRegion"):
        if v["flexeraRegion"] not in FLEXERA_REGIONS:
            c.bad("flexeraRegion", v["flexeraRegion"], f"one of {', '.join(FLEXERA_REGIONS)}")
        elif v["flexeraRegion"] == "on-premises" and c.ok("flexeraParentDomains") and not v["flexeraParentDomains"]:
            c.bad("flexeraParentDomains", v["flexeraParentDomains"],
                  "the parent's domains (the FlexNet Manager Suite application server or the upstream beacon) with flexeraRegion on-premises")


def check_operations(c: Checks) -> None:
    """protection, flowLogRetentionDays, firewallLogRetentionDays, logKmsKeyArn,
    permissionsBoundaryArn, alarmTopicArn, owner, costCentre."""
    v = c.values
    if c.ok("protection") and v["protection"] not in ("auto", "true", "false"):
        c.bad("protection", v["protection"], "auto, true or false")
    for key_name in ("flowLogRetentionDays", "firewallLogRetentionDays", "iisLogRetentionDays"):
        if c.ok(key_name) and v[key_name] not in LOG_RETENTION_DAYS:
            c.bad(key_name, v[key_name], "a CloudWatch Logs retention in days: " + ", ".join(map(str, LOG_RETENTION_DAYS)))
    arn_checks = {  # key -> (service, region: '' for a global ARN, resource prefix)
        "logKmsKeyArn": ("kms", c.region, "key/"),
        "permissionsBoundaryArn": ("iam", "", "policy/"),
        "alarmTopicArn": ("sns", c.region, ""),
    }
    for key_name, (service, arn_region, prefix) in arn_checks.items():
        if c.ok(key_name) and v[key_name]:
            problem = arn_problem(v[key_name], service, arn_region, prefix)
            if problem:
                c.bad(key_name, v[key_name], problem)
    for key_name in ("owner", "costCentre"):
        if c.ok(key_name):
            value = v[key_name]
            if not value or len(value) > 256 or not _TAG_VALUE.fullmatch(value) or _CONTROL.search(value):
                c.bad(key_name, value, "a tag value of 1-256 letters, digits, spaces and _ . : / = + - @")


_SECRET_ARN_KEYS = ("serverCertificateSecretArn", "serverCertificatePasswordSecretArn", "mappedAccountPasswordSecretArn")


def check_iis(c: Checks) -> None:
    """iisSiteName, enforcement, requireMinReadyPercent and the Secrets Manager ARNs the beacon
    reads: the server PFX, its password (both or neither) and a domain mapped account's password."""
    v = c.values
    if c.ok("enforcement") and v["enforcement"] not in ("require", "observe"):
        c.bad("enforcement", v["enforcement"], "require or observe")
    if c.ok("requireMinReadyPercent") and not 0 <= v["requireMinReadyPercent"] <= 100:
        c.bad("requireMinReadyPercent", v["requireMinReadyPercent"], "a percentage from 0 to 100")
    if c.ok("iisSiteName") and not _SITE_NAME.fullmatch(v["iisSiteName"]):
        c.bad("iisSiteName", v["iisSiteName"], "an IIS site name of 1-64 characters without \\ / ? ; : @ & = + $ , | \" < > or control characters")
    bad_arns: set[str] = set()
    for key_name in _SECRET_ARN_KEYS:
        if c.ok(key_name) and v[key_name]:
            problem = secret_arn_problem(v[key_name], c.region, c.name_prefix)
            if problem:
                c.bad(key_name, v[key_name], problem)
                bad_arns.add(key_name)
    # Any bad secret ARN (the mapped account's included) skips the pairing check.
    if c.ok("serverCertificateSecretArn") and c.ok("serverCertificatePasswordSecretArn") and not bad_arns:
        if bool(v["serverCertificateSecretArn"]) != bool(v["serverCertificatePasswordSecretArn"]):
            missing = "serverCertificatePasswordSecretArn" if v["serverCertificateSecretArn"] else "serverCertificateSecretArn"
            c.bad(missing, "", "set together with its partner: the PFX secret and its password secret")


def check_certificates(c: Checks) -> None:
    """sampleDeviceCertificate, crlHosting, crlBucketName, clientCaCertificates,
    oneToOneCertificates, clientAuthTrustMode, mappingMode, extraMappingRules, denyMappingRules."""
    from .iis.mapping_rules import parse_rule  # late: it pulls in cryptography

    v = c.values
    if c.ok("sampleDeviceCertificate") and v["sampleDeviceCertificate"]:
        path = v["sampleDeviceCertificate"]
        if _bad_cert_path(path):
            c.bad("sampleDeviceCertificate", path, _CERT_PATH_EXPECTED)
    if c.ok("crlHosting") and v["crlHosting"] not in ("none", "s3"):
        c.bad("crlHosting", v["crlHosting"], "none or s3")
    if c.ok("crlHosting") and v["crlHosting"] == "s3" and c.ok("crlBucketName"):
        name = v["crlBucketName"]
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name or "") or name.startswith("xn--") or name.endswith("-s3alias"):
            c.bad("crlBucketName", name, "an S3 bucket name of 3-63 lower-case letters, digits and hyphens (no dots: the CRL URL is a virtual-hosted S3 name) when crlHosting is s3")
    for key_name in ("clientCaCertificates", "oneToOneCertificates"):
        if c.ok(key_name):
            for path in v[key_name]:
                if _bad_cert_path(path):
                    c.bad(key_name, path, _CERT_PATH_EXPECTED)
    if c.ok("clientAuthTrustMode") and v["clientAuthTrustMode"] not in (0, 1, 2):
        c.bad("clientAuthTrustMode", v["clientAuthTrustMode"], "0, 1 or 2")
    if c.ok("mappingMode") and v["mappingMode"] not in ("many-to-one", "one-to-one"):
        c.bad("mappingMode", v["mappingMode"], "many-to-one or one-to-one")
    if c.ok("mappingMode") and v["mappingMode"] == "one-to-one" and c.ok("oneToOneCertificates") and not v["oneToOneCertificates"]:
        c.bad("oneToOneCertificates", [], "at least one device certificate file when mappingMode is one-to-one")
    for key_name in ("extraMappingRules", "denyMappingRules"):
        if c.ok(key_name):
            for text in v[key_name]:
                try:
                    parse_rule(text)
                except ValueError as exc:
                    c.bad(key_name, text, str(exc))


def check_mapped_account(c: Checks) -> None:
    """mappedAccountType, mappedAccountName, and a domain account's mappedAccountDomain and password."""
    v = c.values
    if c.ok("mappedAccountType") and v["mappedAccountType"] not in ("local", "domain"):
        c.bad("mappedAccountType", v["mappedAccountType"], "local or domain")
    if c.ok("mappedAccountName") and (not _WINDOWS_USER.fullmatch(v["mappedAccountName"]) or v["mappedAccountName"].strip(" .") != v["mappedAccountName"]):
        c.bad("mappedAccountName", v["mappedAccountName"], "a Windows user name of 1-20 characters without \\ / [ ] : ; | = , + * ? < > @ \" or control characters")
    if c.ok("mappedAccountType") and v["mappedAccountType"] == "domain":
        if c.ok("mappedAccountDomain") and not _NETBIOS_OR_DNS.fullmatch(v["mappedAccountDomain"] or ""):
            c.bad("mappedAccountDomain", v["mappedAccountDomain"], "the account's domain (NetBIOS name or DNS name) when mappedAccountType is domain")
        if c.ok("mappedAccountPasswordSecretArn") and not v["mappedAccountPasswordSecretArn"]:
            c.bad("mappedAccountPasswordSecretArn", "", "a Secrets Manager ARN of the domain account's password when mappedAccountType is domain")


_INSTALLER_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9!_.*'()/ -]{1,1024}\.(msi|exe)")


def check_converge(c: Checks) -> None:
    """convergeSchedule, convergeTimeoutSeconds, complianceSeverity, beaconInstallerS3Uri,
    beaconInstallerSha256, beaconInstallerArguments (convergeReportOnly needs only parsing)."""
    v = c.values
    if c.ok("convergeSchedule"):
        m = _SCHEDULE.fullmatch(v["convergeSchedule"])
        if not m or (m["n"] and m["unit"].startswith("minute") and int(m["n"]) < 30) or (m["n"] and int(m["n"]) < 1):
            c.bad("convergeSchedule", v["convergeSchedule"], "rate(N minutes|hours|days) of at least 30 minutes, or cron(...)")
    if c.ok("convergeTimeoutSeconds") and not 60 <= v["convergeTimeoutSeconds"] <= 172800:
        c.bad("convergeTimeoutSeconds", v["convergeTimeoutSeconds"], "an integer from 60 to 172800")
    if c.ok("complianceSeverity") and v["complianceSeverity"] not in _SEVERITIES:
        c.bad("complianceSeverity", v["complianceSeverity"], ", ".join(_SEVERITIES))
    if c.ok("beaconInstallerS3Uri") and v["beaconInstallerS3Uri"]:
        uri = v["beaconInstallerS3Uri"]
        if not _INSTALLER_URI.fullmatch(uri):
            c.bad("beaconInstallerS3Uri", uri, "s3://bucket/path/installer.msi (or .exe)")
        elif c.ok("beaconInstallerSha256") and not re.fullmatch(r"[0-9a-fA-F]{64}", v["beaconInstallerSha256"]):
            c.bad("beaconInstallerSha256", v["beaconInstallerSha256"], "the installer's SHA-256 as 64 hex digits (checked on the beacon before running it)")
    if c.ok("beaconInstallerArguments"):
        for arg in v["beaconInstallerArguments"]:
            if not re.fullmatch(r"[^\x00-\x1f\x7f]{1,512}", arg):
                c.bad("beaconInstallerArguments", arg, "arguments of 1-512 printable characters")
            elif '"' in arg:
                # The converge script quotes values itself (NAME="a b", /v"<msiexec arguments>").
                c.bad("beaconInstallerArguments", arg, "an argument without double quotes: the converge run adds the quoting each needs")
        # msiexec gets /qn /norestart from the script; an .exe has no documented silent switch,
        # so without its own arguments every converge run would fail at the installer step.
        uri = v["beaconInstallerS3Uri"] if c.ok("beaconInstallerS3Uri") else ""
        if _INSTALLER_URI.fullmatch(uri) and uri.lower().endswith(".exe") and not v["beaconInstallerArguments"]:
            c.bad("beaconInstallerArguments", [], "the .exe installer's own unattended-install arguments (an .msi needs none: it gets /qn /norestart)")


# Run in this order: it is the order issues are reported in (after unknown keys, parse errors and
# aws:region), and that order predates the split. Hence `protection` sits with operations (after
# the egress checks) rather than with the beacons, the mapped account comes after the certificate
# checks though its password ARN is checked with the other secrets in check_iis, and the converge
# and installer checks come last rather than with the other operational ones.
# tests/test_config_validators.py pins this order.
VALIDATORS: tuple[Callable[[Checks], None], ...] = (
    check_network,
    check_beacons,
    check_egress,
    check_operations,
    check_iis,
    check_certificates,
    check_mapped_account,
    check_converge,
)
