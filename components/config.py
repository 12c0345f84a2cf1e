"""Stack configuration: one table of keys, typed dataclasses, and a pure `validate()`.

Pulumi hands a program every config value as a string (arrays and objects as JSON), so
everything here works on a plain ``{key: str}`` mapping. That keeps validation pure: the
program, the offline plan and the tests all feed the same function, and every problem is
reported at once, each naming the key, the bad value and what was expected.

The table `KEYS` is the single source of truth for the keys: Pulumi.yaml's ``config:`` block
and the README's reference table are generated from it (tests keep them in sync).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

PROJECT = "flexnet-beacon"

# Egress groups the firewall's domain allowlist is built from (components/egress.py).
EGRESS_GROUPS = ("crl", "flexera-parent", "aws-endpoints", "windows-update")

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
    2557, 2922, 3288, 3653,
)

RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


@dataclass(frozen=True)
class Key:
    name: str
    type: str  # string | integer | boolean | array
    default: Any
    description: str
    items: str | None = None  # element type for arrays
    secret: bool = False


# Order here is the order of Pulumi.yaml and the README table.
KEYS: tuple[Key, ...] = (
    Key("vpcCidr", "string", "10.80.0.0/22",
        "Private IPv4 CIDR of the dedicated VPC (RFC 1918, /16 to /24). Split per AZ into a protected subnet and a /28 firewall subnet."),
    Key("azCount", "integer", 2, "Number of availability zones (1-3). Each AZ gets its own firewall endpoint (the main cost driver)."),
    Key("availabilityZones", "array", [], "Explicit AZ names (optional); must be in the region and number azCount. Default: the region's first available AZs.", items="string"),
    Key("avoidCidrs", "array", [], "CIDRs the VPC must not overlap (on-premises ranges, peered VPCs, VPN pools).", items="string"),
    Key("beaconCount", "integer", 1, "Number of beacon hosts (>= 1), spread round-robin over the AZs."),
    Key("beaconHostnames", "array", [], "Public DNS names agents use, one per beacon (optional; default: the EC2 public DNS name). Used in agent URLs and certificate checks.", items="string"),
    Key("instanceType", "string", "m6i.large", "EC2 instance type for the Windows beacons (x86_64, at least 4 GiB of memory)."),
    Key("rootVolumeGb", "integer", 60, "Size of the encrypted gp3 root volume in GiB (30-16384)."),
    Key("amiId", "string", "", "Pinned Windows Server 2022 AMI id (optional). Default: the SSM public parameter, with ignore_changes so a new image never replaces a beacon."),
    Key("allowedIngressCidrs", "array", ["0.0.0.0/0"], "IPv4 CIDRs allowed to reach the beacons on 443 (agents live at home: default anywhere).", items="string"),
    Key("allowHttp", "boolean", False, "Also admit TCP 80 to the beacons (off: agents use https with client certificates)."),
    Key("egressPorts", "array", [80, 443], "TCP ports the beacons may use outbound (CRL over http, APIs over https); the firewall filters by domain.", items="integer"),
    Key("crlUrls", "array", [], "CRL distribution point URLs (http or https) the beacon must reach to check revocation; their hosts join the crl egress group.", items="string"),
    Key("crlDomains", "array", [], "Extra domains for the crl egress group ('.example.com' = domain and subdomains).", items="string"),
    Key("flexeraParentDomains", "array", [], "Domains of the beacon's parent (Flexera One or the upstream beacon/inventory server).", items="string"),
    Key("awsEndpointsExtraDomains", "array", [], "Extra domains for the aws-endpoints egress group (SSM, Secrets Manager, CloudWatch Logs, S3 of the region are built in).", items="string"),
    Key("windowsUpdateExtraDomains", "array", [], "Extra domains for the windows-update egress group (Microsoft update domains are built in).", items="string"),
    Key("egressDisabledGroups", "array", [], "Egress groups to switch off: crl, flexera-parent, aws-endpoints, windows-update.", items="string"),
    Key("flowLogRetentionDays", "integer", 90, "Retention of the VPC flow log group (a CloudWatch Logs retention value)."),
    Key("firewallLogRetentionDays", "integer", 90, "Retention of the Network Firewall ALERT and FLOW log groups (a CloudWatch Logs retention value)."),
    Key("logKmsKeyArn", "string", "", "KMS key ARN to encrypt the log groups (optional)."),
    Key("permissionsBoundaryArn", "string", "", "IAM permissions boundary policy ARN for the beacon role (optional)."),
    Key("alarmTopicArn", "string", "", "SNS topic ARN notified when an instance is recovered (optional)."),
    Key("protection", "string", "auto", "Delete protection on the firewall and termination protection on the beacons: auto (on for stacks whose name starts with 'prod'), true or false."),
    # IIS client-certificate mapping (components/iis_state.py, components/windows/).
    Key("iisSiteName", "string", "Default Web Site", "IIS site that serves the beacon (its ManageSoftDL and ManageSoftRL applications)."),
    Key("serverCertificateSecretArn", "string", "", "Secrets Manager ARN of the beacon's PFX (binary secret, name under flexnet-beacon/<stack>/; see scripts.ops publish-server-cert)."),
    Key("serverCertificatePasswordSecretArn", "string", "", "Secrets Manager ARN of the PFX password (name under flexnet-beacon/<stack>/)."),
    Key("clientCaCertificates", "array", [], "PEM or DER files (paths relative to the project) of the CA chain that issues device certificates: self-signed ones go to Root, others to CA, issuing CAs also to ClientAuthIssuer and into the Issuer mapping rule.", items="string"),
    Key("sampleDeviceCertificate", "string", "", "A device certificate file (public part only) from your CA: its CRL distribution points and AIA URLs join the crl egress group."),
    Key("issuerRuleMatchOrganization", "boolean", False, "Also match the issuing CA's O (Organization) in the Issuer rule, not only its CN."),
    Key("crlHosting", "string", "none", "none, or s3: a bucket whose *.crl objects (only) are readable over http at http://<crlBucketName>.s3.<region>.amazonaws.com/ (lab CRL hosting; publish with scripts.pki crl --publish)."),
    Key("crlBucketName", "string", "", "Globally unique S3 bucket name for crlHosting s3."),
    Key("exclusiveClientTrust", "boolean", True, "Trust only the issuing CAs for client certificates (HTTP.sys sslctlstorename=ClientAuthIssuer)."),
    Key("clientAuthTrustMode", "integer", 2, "SCHANNEL ClientAuthTrustMode: 0 machine trust, 1 exclusive root trust, 2 exclusive CA trust."),
    Key("revocationChecking", "boolean", True, "HTTP.sys checks client certificate revocation (CRLs must be reachable: see crlUrls)."),
    Key("mappingMode", "string", "many-to-one", "IIS client certificate mapping: many-to-one (rules on Issuer/Subject) or one-to-one (listed certificates)."),
    Key("extraMappingRules", "array", [], "More rules for the Allow mapping, ANDed with the Issuer CN rule: Field.SubField=match ('~=' case-insensitive, '*' wildcard), e.g. Subject.O=Example Corp.", items="string"),
    Key("denyMappingRules", "array", [], "Rules that each become a Deny mapping for a sub-population, e.g. Subject.OU=Contractors.", items="string"),
    Key("oneToOneCertificates", "array", [], "One-to-one mode: device certificate files (public PEM/DER) mapped to the mapped account.", items="string"),
    Key("mappedAccountType", "string", "local", "Account the mapping logs devices on as: local (created on the instance with a random password that never leaves it) or domain."),
    Key("mappedAccountName", "string", "FlexNetAgent", "User name of the mapped account (Windows user name, at most 20 characters)."),
    Key("mappedAccountDomain", "string", "", "Domain of a domain mapped account (NetBIOS or DNS name)."),
    Key("mappedAccountPasswordSecretArn", "string", "", "Secrets Manager ARN of a domain mapped account's password (name under flexnet-beacon/<stack>/)."),
    Key("convergeSchedule", "string", "rate(30 minutes)", "State Manager schedule of the converge run: rate(N minutes|hours|days) with at least 30 minutes, or cron(...)."),
    Key("convergeReportOnly", "boolean", False, "Report drift only; change nothing on the beacons."),
    Key("convergeTimeoutSeconds", "integer", 1800, "Timeout of one converge run (60-172800 seconds)."),
    Key("complianceSeverity", "string", "HIGH", "Compliance severity of the association: CRITICAL, HIGH, MEDIUM, LOW or UNSPECIFIED."),
    Key("beaconInstallerS3Uri", "string", "", "Optional s3://bucket/key of the FlexNet beacon installer (.msi or .exe); installed unattended when set."),
    Key("beaconInstallerSha256", "string", "", "SHA-256 of the installer (required with beaconInstallerS3Uri)."),
    Key("beaconInstallerArguments", "array", [], "Installer arguments, passed as data (e.g. /qn, PROPERTY=value).", items="string"),
    Key("owner", "string", "unassigned", "Owner tag value on every resource."),
    Key("costCentre", "string", "unassigned", "Cost centre tag value on every resource."),
)
KEYS_BY_NAME = {k.name: k for k in KEYS}


class SecretValue(str):
    """A config value Pulumi keeps encrypted (`pulumi config set --secret`); keys declared
    secret refuse anything else, so a password never sits in a stack file in plain text."""


@dataclass(frozen=True)
class ConfigIssue:
    key: str
    value: Any
    expected: str

    def __str__(self) -> str:
        if isinstance(self.value, SecretValue):
            return f"{self.key}: got a secret value (not shown); expected {self.expected}"
        shown = self.value if isinstance(self.value, str) else json.dumps(self.value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        return f"{self.key}: got {shown!r}; expected {self.expected}"


class ConfigInvalid(Exception):
    def __init__(self, issues: Sequence[ConfigIssue]):
        self.issues = list(issues)
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"invalid stack configuration ({len(self.issues)} problem{'s' if len(self.issues) != 1 else ''}):"]
        lines += [f"  - {i}" for i in self.issues]
        return "\n".join(lines)


@dataclass(frozen=True)
class EgressGroupConfig:
    enabled: bool
    extra_domains: tuple[str, ...]


@dataclass(frozen=True)
class BeaconConfig:
    stack: str
    region: str
    vpc_cidr: str
    az_count: int
    availability_zones: tuple[str, ...]
    avoid_cidrs: tuple[str, ...]
    beacon_count: int
    beacon_hostnames: tuple[str, ...]
    instance_type: str
    root_volume_gb: int
    ami_id: str
    allowed_ingress_cidrs: tuple[str, ...]
    allow_http: bool
    egress_ports: tuple[int, ...]
    crl_urls: tuple[str, ...]
    egress_groups: Mapping[str, EgressGroupConfig]
    flow_log_retention_days: int
    firewall_log_retention_days: int
    log_kms_key_arn: str
    permissions_boundary_arn: str
    alarm_topic_arn: str
    protection: bool
    owner: str
    cost_centre: str
    iis_site_name: str = "Default Web Site"
    server_certificate_secret_arn: str = ""
    server_certificate_password_secret_arn: str = ""
    client_ca_certificates: tuple[str, ...] = ()
    sample_device_certificate: str = ""
    issuer_rule_match_organization: bool = False
    crl_hosting: str = "none"
    crl_bucket_name: str = ""
    exclusive_client_trust: bool = True
    client_auth_trust_mode: int = 2
    revocation_checking: bool = True
    mapping_mode: str = "many-to-one"
    extra_mapping_rules: tuple[str, ...] = ()
    deny_mapping_rules: tuple[str, ...] = ()
    one_to_one_certificates: tuple[str, ...] = ()
    mapped_account_type: str = "local"
    mapped_account_name: str = "FlexNetAgent"
    mapped_account_domain: str = ""
    mapped_account_password_secret_arn: str = ""
    converge_schedule: str = "rate(30 minutes)"
    converge_report_only: bool = False
    converge_timeout_seconds: int = 1800
    compliance_severity: str = "HIGH"
    beacon_installer_s3_uri: str = ""
    beacon_installer_sha256: str = ""
    beacon_installer_arguments: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def name_prefix(self) -> str:
        """Prefix of this stack's secrets and parameters; the beacon role may read only these."""
        return f"{PROJECT}/{self.stack}/"


# --- parsing: strings (as Pulumi passes them) to typed values --------------------------------

_MISSING = object()


def _parse_scalar(key: Key, raw: str) -> Any:
    if key.type == "string":
        return raw
    if key.type == "integer":
        if not re.fullmatch(r"[+-]?\d+", raw.strip()):
            raise ValueError("an integer")
        try:
            return int(raw)
        except ValueError:  # more digits than int() will convert (sys.get_int_max_str_digits)
            raise ValueError("an integer") from None
    if key.type == "boolean":
        low = raw.strip().lower()
        if low not in ("true", "false"):
            raise ValueError("true or false")
        return low == "true"
    raise AssertionError(key.type)


def _parse(key: Key, raw: Any) -> Any:
    if key.type != "array":
        if not isinstance(raw, str):
            raise ValueError("an integer" if key.type == "integer" else f"a {key.type}")
        return _parse_scalar(key, raw)
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
            raise ValueError(f"a list of {key.items}s (YAML list or JSON array)") from None
    if not isinstance(value, list):
        raise ValueError(f"a list of {key.items}s (YAML list or JSON array)")
    out = []
    for item in value:
        if key.items == "integer":
            if isinstance(item, bool) or not isinstance(item, int):
                raise ValueError("a list of integers")
        elif not isinstance(item, str):
            raise ValueError("a list of strings")
        out.append(item)
    return out


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
        parts.port  # raises on a bad port
    except ValueError:
        return None, "an http:// or https:// URL with a valid host and port"
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


def validate(raw: Mapping[str, Any], stack: str, region: str | None) -> list[ConfigIssue]:
    """Every problem in `raw` (project keys without namespace -> Pulumi string values)."""
    return _build(raw, stack, region)[1]


def load(raw: Mapping[str, Any], stack: str, region: str | None) -> BeaconConfig:
    """Typed configuration, or ConfigInvalid naming every problem."""
    cfg, issues = _build(raw, stack, region)
    if issues or cfg is None:
        raise ConfigInvalid(issues)
    return cfg


def _build(raw: Mapping[str, Any], stack: str, region: str | None) -> tuple[BeaconConfig | None, list[ConfigIssue]]:
    issues: list[ConfigIssue] = []
    bad = lambda key, value, expected: issues.append(ConfigIssue(key, value, expected))  # noqa: E731

    for key in sorted(raw):
        if key not in KEYS_BY_NAME:
            close = difflib.get_close_matches(key, KEYS_BY_NAME, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            bad(f"{PROJECT}:{key}", raw[key], f"a known key (see Pulumi.yaml){hint}")

    values: dict[str, Any] = {}
    for key in KEYS:
        value = raw.get(key.name, _MISSING)
        if value is _MISSING or value is None:
            values[key.name] = key.default
            continue
        if key.secret and not isinstance(value, SecretValue):
            bad(key.name, "(plain text, not shown)", f"a secret: pulumi config set --secret {key.name} ...")
            values[key.name] = _MISSING
            continue
        try:
            values[key.name] = _parse(key, value)
        except ValueError as exc:
            bad(key.name, value, str(exc))
            values[key.name] = _MISSING

    def ok(name: str) -> bool:
        return values[name] is not _MISSING

    if not region:
        bad("aws:region", region or "", "an AWS region like us-east-1 (pulumi config set aws:region ...)")
    elif not _REGION.fullmatch(region):
        bad("aws:region", region, "an AWS region like us-east-1")
        region = None

    # Network layout.
    vpc = None
    if ok("vpcCidr"):
        vpc = _cidr(values["vpcCidr"])
        if vpc is None:
            bad("vpcCidr", values["vpcCidr"], "an IPv4 CIDR with no host bits set, like 10.80.0.0/22")
        elif not any(vpc.subnet_of(p) for p in RFC1918):
            bad("vpcCidr", values["vpcCidr"], "a private (RFC 1918) range: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
            vpc = None
        elif not 16 <= vpc.prefixlen <= 24:
            bad("vpcCidr", values["vpcCidr"], "a prefix between /16 (AWS maximum) and /24 (smallest that splits into 3 AZs of protected and /28 firewall subnets)")
            vpc = None
    if ok("azCount") and not 1 <= values["azCount"] <= 3:
        bad("azCount", values["azCount"], "an integer from 1 to 3")
    if ok("availabilityZones") and values["availabilityZones"]:
        zones = values["availabilityZones"]
        if ok("azCount") and len(zones) != values["azCount"]:
            bad("availabilityZones", zones, f"exactly azCount ({values['azCount']}) zone names")
        if len(set(zones)) != len(zones):
            bad("availabilityZones", zones, "distinct zone names")
        for zone in zones:
            if not (region and re.fullmatch(re.escape(region) + r"[a-z]", zone)):
                bad("availabilityZones", zone, f"a zone of the stack's region, like {region or 'us-east-1'}a")
    if ok("avoidCidrs"):
        for item in values["avoidCidrs"]:
            net = _cidr(item)
            if net is None:
                bad("avoidCidrs", item, "an IPv4 CIDR with no host bits set")
            elif vpc is not None and vpc.overlaps(net):
                bad("vpcCidr", str(vpc), f"a range that does not overlap avoidCidrs entry {item}")

    # Beacons.
    if ok("beaconCount") and not 1 <= values["beaconCount"] <= 20:
        bad("beaconCount", values["beaconCount"], "an integer from 1 to 20")
    if ok("beaconHostnames") and values["beaconHostnames"]:
        names = values["beaconHostnames"]
        for name in names:
            problem = hostname_problem(name)
            if problem:
                bad("beaconHostnames", name, problem)
        if ok("beaconCount") and len(names) != values["beaconCount"]:
            bad("beaconHostnames", names, f"one host name per beacon (beaconCount = {values['beaconCount']})")
        if len({n.lower() for n in names}) != len(names):
            bad("beaconHostnames", names, "distinct host names")
    if ok("instanceType"):
        problem = instance_type_problem(values["instanceType"])
        if problem:
            bad("instanceType", values["instanceType"], problem)
    if ok("rootVolumeGb") and not 30 <= values["rootVolumeGb"] <= 16384:
        bad("rootVolumeGb", values["rootVolumeGb"], "an integer from 30 (the Windows AMI's snapshot size) to 16384")
    if ok("amiId") and values["amiId"] and not re.fullmatch(r"ami-[0-9a-f]{8}([0-9a-f]{9})?", values["amiId"]):
        bad("amiId", values["amiId"], "an AMI id like ami-0123456789abcdef0, or empty for the latest Windows Server 2022")

    # Ingress and egress.
    if ok("allowedIngressCidrs"):
        cidrs = values["allowedIngressCidrs"]
        if not cidrs:
            bad("allowedIngressCidrs", cidrs, "at least one CIDR (0.0.0.0/0 admits agents anywhere)")
        for item in cidrs:
            if _cidr(item) is None:
                bad("allowedIngressCidrs", item, "an IPv4 CIDR with no host bits set, like 203.0.113.0/24")
        if len(set(cidrs)) != len(cidrs):
            bad("allowedIngressCidrs", cidrs, "no duplicate CIDRs")
    if ok("egressPorts"):
        ports = values["egressPorts"]
        if not ports:
            bad("egressPorts", ports, "at least one port (80 for CRLs over http, 443 for AWS APIs)")
        for port in ports:
            if not 1 <= port <= 65535:
                bad("egressPorts", port, "a TCP port from 1 to 65535")
        if len(set(ports)) != len(ports):
            bad("egressPorts", ports, "no duplicate ports")
    crl_hosts: list[str] = []
    if ok("crlUrls"):
        for url in values["crlUrls"]:
            host, problem = url_host_problem(url)
            if problem:
                bad("crlUrls", url, problem)
            elif host:
                crl_hosts.append(host)
    domain_keys = {
        "crl": "crlDomains",
        "flexera-parent": "flexeraParentDomains",
        "aws-endpoints": "awsEndpointsExtraDomains",
        "windows-update": "windowsUpdateExtraDomains",
    }
    for key_name in domain_keys.values():
        if ok(key_name):
            for item in values[key_name]:
                problem = domain_problem(item)
                if problem:
                    bad(key_name, item, problem)
    if ok("egressDisabledGroups"):
        for item in values["egressDisabledGroups"]:
            if item not in EGRESS_GROUPS:
                bad("egressDisabledGroups", item, f"one of {', '.join(EGRESS_GROUPS)}")

    if ok("protection") and values["protection"] not in ("auto", "true", "false"):
        bad("protection", values["protection"], "auto, true or false")

    # Logs, ARNs, tags.
    for key_name in ("flowLogRetentionDays", "firewallLogRetentionDays"):
        if ok(key_name) and values[key_name] not in LOG_RETENTION_DAYS:
            bad(key_name, values[key_name], "a CloudWatch Logs retention in days: " + ", ".join(map(str, LOG_RETENTION_DAYS)))
    arn_checks = {
        "logKmsKeyArn": ("kms", region, "key/"),
        "permissionsBoundaryArn": ("iam", "", "policy/"),
        "alarmTopicArn": ("sns", region, ""),
    }
    for key_name, (service, arn_region, prefix) in arn_checks.items():
        if ok(key_name) and values[key_name]:
            problem = arn_problem(values[key_name], service, arn_region, prefix)
            if problem:
                bad(key_name, values[key_name], problem)
    for key_name in ("owner", "costCentre"):
        if ok(key_name):
            value = values[key_name]
            if not value or len(value) > 256 or not _TAG_VALUE.fullmatch(value) or _CONTROL.search(value):
                bad(key_name, value, "a tag value of 1-256 letters, digits, spaces and _ . : / = + - @")

    _validate_iis(values, ok, bad, region, stack)

    if issues:
        return None, issues

    disabled = set(values["egressDisabledGroups"])
    extra = {group: list(values[key]) for group, key in domain_keys.items()}
    extra["crl"] = crl_hosts + extra["crl"]
    groups = {
        group: EgressGroupConfig(enabled=group not in disabled, extra_domains=tuple(extra[group]))
        for group in EGRESS_GROUPS
    }
    protection = {"auto": stack.startswith("prod"), "true": True, "false": False}[values["protection"]]
    warnings = []
    if values["owner"] == "unassigned" or values["costCentre"] == "unassigned":
        warnings.append("owner/costCentre are 'unassigned': set them so the bill can be attributed")
    if values["allowHttp"]:
        warnings.append("allowHttp is on: port 80 carries no client certificate")
    if "crl" in disabled and values["revocationChecking"]:
        warnings.append("the crl egress group is off while revocationChecking is on: unless the CRLs are reachable another way, IIS answers 403.13 to every device")
    assert region is not None
    cfg = BeaconConfig(
        stack=stack,
        region=region,
        vpc_cidr=values["vpcCidr"],
        az_count=values["azCount"],
        availability_zones=tuple(values["availabilityZones"]),
        avoid_cidrs=tuple(values["avoidCidrs"]),
        beacon_count=values["beaconCount"],
        beacon_hostnames=tuple(h.lower() for h in values["beaconHostnames"]),
        instance_type=values["instanceType"],
        root_volume_gb=values["rootVolumeGb"],
        ami_id=values["amiId"],
        allowed_ingress_cidrs=tuple(values["allowedIngressCidrs"]),
        allow_http=values["allowHttp"],
        egress_ports=tuple(values["egressPorts"]),
        crl_urls=tuple(values["crlUrls"]),
        egress_groups=groups,
        flow_log_retention_days=values["flowLogRetentionDays"],
        firewall_log_retention_days=values["firewallLogRetentionDays"],
        log_kms_key_arn=values["logKmsKeyArn"],
        permissions_boundary_arn=values["permissionsBoundaryArn"],
        alarm_topic_arn=values["alarmTopicArn"],
        protection=protection,
        owner=values["owner"],
        cost_centre=values["costCentre"],
        iis_site_name=values["iisSiteName"],
        server_certificate_secret_arn=values["serverCertificateSecretArn"],
        server_certificate_password_secret_arn=values["serverCertificatePasswordSecretArn"],
        client_ca_certificates=tuple(values["clientCaCertificates"]),
        sample_device_certificate=values["sampleDeviceCertificate"],
        issuer_rule_match_organization=values["issuerRuleMatchOrganization"],
        crl_hosting=values["crlHosting"],
        crl_bucket_name=values["crlBucketName"],
        exclusive_client_trust=values["exclusiveClientTrust"],
        client_auth_trust_mode=values["clientAuthTrustMode"],
        revocation_checking=values["revocationChecking"],
        mapping_mode=values["mappingMode"],
        extra_mapping_rules=tuple(values["extraMappingRules"]),
        deny_mapping_rules=tuple(values["denyMappingRules"]),
        one_to_one_certificates=tuple(values["oneToOneCertificates"]),
        mapped_account_type=values["mappedAccountType"],
        mapped_account_name=values["mappedAccountName"],
        mapped_account_domain=values["mappedAccountDomain"],
        mapped_account_password_secret_arn=values["mappedAccountPasswordSecretArn"],
        converge_schedule=values["convergeSchedule"],
        converge_report_only=values["convergeReportOnly"],
        converge_timeout_seconds=values["convergeTimeoutSeconds"],
        compliance_severity=values["complianceSeverity"],
        beacon_installer_s3_uri=values["beaconInstallerS3Uri"],
        beacon_installer_sha256=values["beaconInstallerSha256"].lower(),
        beacon_installer_arguments=tuple(values["beaconInstallerArguments"]),
        warnings=tuple(warnings),
    )
    return cfg, []


_SITE_NAME = re.compile(r"[^\\/?;:@&=+$,|\"<>\x00-\x1f\x7f]{1,64}")
_WINDOWS_USER = re.compile(r"[^\\/\[\]:;|=,+*?<>@\"\x00-\x1f\x7f]{1,20}")
_NETBIOS_OR_DNS = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,14}|([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.IGNORECASE)
_SCHEDULE = re.compile(r"rate\((?P<n>[0-9]{1,4}) (?P<unit>minutes?|hours?|days?)\)|cron\([0-9A-Za-z*?/,#\- ]{9,100}\)")
_CERT_PATH = re.compile(r"[A-Za-z0-9._/\- ]{1,255}")
_SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNSPECIFIED")


def _secret_arn_problem(value: str, region: str | None, stack: str) -> str | None:
    problem = arn_problem(value, "secretsmanager", region, "secret:")
    if problem:
        return problem
    name = value.split(":secret:", 1)[1]
    prefix = f"{PROJECT}/{stack}/"
    if not name.startswith(prefix):
        return f"a secret named under {prefix} (the only secrets the beacon's role may read)"
    return None


def _validate_iis(values: dict[str, Any], ok: Callable[[str], bool], bad: Callable[[str, Any, str], None], region: str | None, stack: str) -> None:
    from .iis.mapping_rules import parse_rule

    if ok("iisSiteName") and not _SITE_NAME.fullmatch(values["iisSiteName"]):
        bad("iisSiteName", values["iisSiteName"], "an IIS site name of 1-64 characters without \\ / ? ; : @ & = + $ , | \" < > or control characters")
    bad_arns = set()
    for key_name in ("serverCertificateSecretArn", "serverCertificatePasswordSecretArn", "mappedAccountPasswordSecretArn"):
        if ok(key_name) and values[key_name]:
            problem = _secret_arn_problem(values[key_name], region, stack)
            if problem:
                bad(key_name, values[key_name], problem)
                bad_arns.add(key_name)
    if ok("serverCertificateSecretArn") and ok("serverCertificatePasswordSecretArn") and not bad_arns:
        if bool(values["serverCertificateSecretArn"]) != bool(values["serverCertificatePasswordSecretArn"]):
            missing = "serverCertificatePasswordSecretArn" if values["serverCertificateSecretArn"] else "serverCertificateSecretArn"
            bad(missing, "", "set together with its partner: the PFX secret and its password secret")
    if ok("sampleDeviceCertificate") and values["sampleDeviceCertificate"]:
        path = values["sampleDeviceCertificate"]
        if not _CERT_PATH.fullmatch(path) or ".." in path.split("/"):
            bad("sampleDeviceCertificate", path, "a certificate file path relative to the project (letters, digits, . _ - / and spaces; no ..)")
    if ok("crlHosting") and values["crlHosting"] not in ("none", "s3"):
        bad("crlHosting", values["crlHosting"], "none or s3")
    if ok("crlHosting") and values["crlHosting"] == "s3" and ok("crlBucketName"):
        name = values["crlBucketName"]
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name or "") or name.startswith("xn--") or name.endswith("-s3alias"):
            bad("crlBucketName", name, "an S3 bucket name of 3-63 lower-case letters, digits and hyphens (no dots: the CRL URL is a virtual-hosted S3 name) when crlHosting is s3")
    for key_name in ("clientCaCertificates", "oneToOneCertificates"):
        if ok(key_name):
            for path in values[key_name]:
                if not _CERT_PATH.fullmatch(path) or ".." in path.split("/"):
                    bad(key_name, path, "a certificate file path relative to the project (letters, digits, . _ - / and spaces; no ..)")
    for key_name, setting in (("clientAuthTrustMode", (0, 1, 2)),):
        if ok(key_name) and values[key_name] not in setting:
            bad(key_name, values[key_name], "0, 1 or 2")
    if ok("mappingMode") and values["mappingMode"] not in ("many-to-one", "one-to-one"):
        bad("mappingMode", values["mappingMode"], "many-to-one or one-to-one")
    if ok("mappingMode") and values["mappingMode"] == "one-to-one" and ok("oneToOneCertificates") and not values["oneToOneCertificates"]:
        bad("oneToOneCertificates", [], "at least one device certificate file when mappingMode is one-to-one")
    for key_name in ("extraMappingRules", "denyMappingRules"):
        if ok(key_name):
            for text in values[key_name]:
                try:
                    parse_rule(text)
                except ValueError as exc:
                    bad(key_name, text, str(exc))
    if ok("mappedAccountType") and values["mappedAccountType"] not in ("local", "domain"):
        bad("mappedAccountType", values["mappedAccountType"], "local or domain")
    if ok("mappedAccountName") and (not _WINDOWS_USER.fullmatch(values["mappedAccountName"]) or values["mappedAccountName"].strip(" .") != values["mappedAccountName"]):
        bad("mappedAccountName", values["mappedAccountName"], "a Windows user name of 1-20 characters without \\ / [ ] : ; | = , + * ? < > @ \" or control characters")
    if ok("mappedAccountType") and values["mappedAccountType"] == "domain":
        if ok("mappedAccountDomain") and not _NETBIOS_OR_DNS.fullmatch(values["mappedAccountDomain"] or ""):
            bad("mappedAccountDomain", values["mappedAccountDomain"], "the account's domain (NetBIOS name or DNS name) when mappedAccountType is domain")
        if ok("mappedAccountPasswordSecretArn") and not values["mappedAccountPasswordSecretArn"]:
            bad("mappedAccountPasswordSecretArn", "", "a Secrets Manager ARN of the domain account's password when mappedAccountType is domain")
    if ok("convergeSchedule"):
        m = _SCHEDULE.fullmatch(values["convergeSchedule"])
        if not m or (m["n"] and m["unit"].startswith("minute") and int(m["n"]) < 30) or (m["n"] and int(m["n"]) < 1):
            bad("convergeSchedule", values["convergeSchedule"], "rate(N minutes|hours|days) of at least 30 minutes, or cron(...)")
    if ok("convergeTimeoutSeconds") and not 60 <= values["convergeTimeoutSeconds"] <= 172800:
        bad("convergeTimeoutSeconds", values["convergeTimeoutSeconds"], "an integer from 60 to 172800")
    if ok("complianceSeverity") and values["complianceSeverity"] not in _SEVERITIES:
        bad("complianceSeverity", values["complianceSeverity"], ", ".join(_SEVERITIES))
    if ok("beaconInstallerS3Uri") and values["beaconInstallerS3Uri"]:
        uri = values["beaconInstallerS3Uri"]
        if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9!_.*'()/ -]{1,1024}\.(msi|exe)", uri):
            bad("beaconInstallerS3Uri", uri, "s3://bucket/path/installer.msi (or .exe)")
        elif ok("beaconInstallerSha256") and not re.fullmatch(r"[0-9a-fA-F]{64}", values["beaconInstallerSha256"]):
            bad("beaconInstallerSha256", values["beaconInstallerSha256"], "the installer's SHA-256 as 64 hex digits (checked on the beacon before running it)")
    if ok("beaconInstallerArguments"):
        for arg in values["beaconInstallerArguments"]:
            if not re.fullmatch(r"[^\x00-\x1f\x7f]{1,512}", arg):
                bad("beaconInstallerArguments", arg, "arguments of 1-512 printable characters")


# --- reading from the Pulumi runtime ---------------------------------------------------------

def raw_from_pulumi() -> tuple[dict[str, Any], str, str | None]:
    """(project keys -> raw string values, stack name, region) from the running Pulumi program."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    prefix = f"{PROJECT}:"
    all_keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    raw = {}
    for full_key in all_keys:
        value = runtime_config.get_config(full_key)
        if full_key.startswith(prefix) and value is not None:
            secret = runtime_config.is_config_secret(full_key)
            raw[full_key[len(prefix):]] = SecretValue(value) if secret else value
    region = pulumi.Config("aws").get("region")
    return raw, pulumi.get_stack(), region


def stack_file_to_raw(document: Mapping[str, Any]) -> tuple[dict[str, str], str | None, list[str]]:
    """A parsed stacks/Pulumi.<stack>.yaml -> (project raw values, aws:region, secret keys).

    Mirrors what the Pulumi CLI hands a program: scalars as strings, lists/objects as JSON.
    `secure:` values cannot be decrypted offline; they become a placeholder marked secret.
    """
    config = document.get("config") or {}
    raw: dict[str, str] = {}
    secrets: list[str] = []
    region = None
    for full_key, value in config.items():
        if value is None:  # `key:` with nothing after it: unset, as in Pulumi
            continue
        namespace, _, key = str(full_key).partition(":")
        if isinstance(value, dict) and set(value) == {"secure"}:
            secrets.append(full_key)
            if namespace == PROJECT:
                raw[key] = SecretValue("[secret]")  # cannot be decrypted offline
                continue
            value = "[secret]"
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, dict)):
            text = json.dumps(value)
        else:
            text = str(value)
        if full_key == "aws:region":
            region = text
        elif namespace == PROJECT:
            raw[key] = text
    return raw, region, secrets
