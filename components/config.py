"""Stack configuration: one table of keys, typed dataclasses, and a pure `validate()`.

Pulumi hands a program every config value as a string (arrays and objects as JSON), so
everything here works on a plain ``{key: str}`` mapping. That keeps validation pure: the
program, the offline plan and the tests all feed the same function, and every problem is
reported at once, each naming the key, the bad value and what was expected.

The table `KEYS` is the single source of truth for the keys: Pulumi.yaml's ``config:`` block
and the README's reference table are generated from it (tests keep them in sync).

This module parses the raw strings and assembles `BeaconConfig`; the checks of the typed values,
one validator per concern, live in components/config_checks.py. Import everything, those
checks included, from here.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

# `X as X`: re-exported, callers import these from components.config.
from .stack_names import stack_name_problem
from .config_checks import (
    EGRESS_DOMAIN_KEYS,
    EGRESS_GROUPS as EGRESS_GROUPS,
    OPT_IN_GROUPS,
    LOG_RETENTION_DAYS as LOG_RETENTION_DAYS,
    RFC1918 as RFC1918,
    VALIDATORS,
    Checks,
    Report,
    arn_problem as arn_problem,
    checked_region,
    domain_problem as domain_problem,
    hostname_problem as hostname_problem,
    instance_type_problem as instance_type_problem,
    secret_arn_problem,
    url_host_problem as url_host_problem,
)

PROJECT = "flexnet-beacon"


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
    Key("flexeraRegion", "string", "na", "Flexera One region of the beacon's tenant: na, eu or apac (their documented application, batch, inventory and sign-in hosts and the revocation servers of their certificates join the flexera-parent egress group), or on-premises (FlexNet Manager Suite: flexeraParentDomains names the parent)."),
    Key("flexeraParentDomains", "array", [], "More domains for the flexera-parent egress group: with flexeraRegion on-premises the application server or upstream beacon (required); otherwise anything Flexera's region list lacks.", items="string"),
    Key("awsEndpointsExtraDomains", "array", [], "Extra domains for the aws-endpoints egress group (SSM, Secrets Manager, CloudWatch Logs and metrics of the region are built in; S3 goes through the VPC's gateway endpoint, not the firewall).", items="string"),
    Key("windowsUpdateExtraDomains", "array", [], "Extra domains for the windows-update egress group (Microsoft update domains are built in).", items="string"),
    Key("egressDisabledGroups", "array", [], "Egress groups to switch off: crl, flexera-parent, aws-endpoints, windows-update, windows-extras.", items="string"),
    Key("windowsExtrasEgress", "boolean", False, "Add the windows-extras egress group: Microsoft Defender cloud protection and definition updates, Microsoft and DigiCert OCSP and CRL hosts, Windows Delivery Optimization (off: the beacon gets updates through windows-update only)."),
    Key("privateAwsEndpoints", "boolean", False, "Interface VPC endpoints (private DNS) for ssm, ssmmessages, ec2messages, secretsmanager, logs and monitoring in every AZ, so AWS API traffic stays in the VPC (adds about $7.30 per endpoint per AZ each month)."),
    Key("flowLogRetentionDays", "integer", 90, "Retention of the VPC flow log group (a CloudWatch Logs retention value)."),
    Key("firewallLogRetentionDays", "integer", 90, "Retention of the Network Firewall ALERT and FLOW log groups (a CloudWatch Logs retention value)."),
    Key("logKmsKeyArn", "string", "", "KMS key ARN to encrypt the log groups (optional)."),
    Key("permissionsBoundaryArn", "string", "", "IAM permissions boundary policy ARN for the beacon role (optional)."),
    Key("alarmTopicArn", "string", "", "SNS topic ARN notified when an instance is recovered (optional)."),
    Key("protection", "string", "auto", "Delete protection on the firewall and termination protection on the beacons: auto (on for stacks whose name starts with 'prod'), true or false."),
    # IIS client-certificate mapping (components/iis_state.py, components/windows/).
    Key("enforcement", "string", "require", "Client certificates: require (devices without a valid certificate from your CA are refused) or observe (certificates are negotiated and mapped, but anonymous requests still pass: the migration step before require; see docs/operations.md)."),
    Key("requireMinReadyPercent", "integer", 100, "Share of devices (0-100) that must present a valid certificate, per `ops readiness`, before the workflows allow a switch from observe to require."),
    Key("iisLogRetentionDays", "integer", 90, "Retention of the IIS log groups /flexnet-beacon/<stack>/iis and /flexnet-beacon/<stack>/httperr (HTTP.sys errors: TLS-level refusals) (a CloudWatch Logs retention value)."),
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
    Key("beaconInstallerArguments", "array", [], "Installer arguments, passed as data (PROPERTY=value). An .msi always gets /qn /norestart; an .exe needs its own unattended-install switches here (Flexera's BeaconInstaller .exe: /s and /v followed by its msiexec arguments, e.g. `/v/qn FNMPWEBUIURL=https://fnms.example.com/Suite`; see docs/operations.md).", items="string"),
    Key("beaconRegistration", "boolean", False, "Stage each beacon's own Flexera beacon configuration file from Secrets Manager (secret flexnet-beacon/<stack>/beacon-registration/<instance id>) in its private state folder for the one manual import Flexera documents (docs/operations.md)."),
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
    private_aws_endpoints: bool
    flow_log_retention_days: int
    firewall_log_retention_days: int
    log_kms_key_arn: str
    permissions_boundary_arn: str
    alarm_topic_arn: str
    protection: bool
    owner: str
    cost_centre: str
    iis_site_name: str = "Default Web Site"
    flexera_region: str = "na"
    enforcement: str = "require"
    require_min_ready_percent: int = 100
    iis_log_retention_days: int = 90
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
    beacon_registration: bool = False
    warnings: tuple[str, ...] = field(default=())

    @property
    def name_prefix(self) -> str:
        """Prefix of this stack's secrets and parameters; the beacon role may read only these."""
        return f"{PROJECT}/{self.stack}/"


# --- parsing: strings (as Pulumi passes them) to typed values --------------------------------

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


# --- validation: parse, run the per-concern validators, assemble ---------------------------

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
    """Issues are reported in a fixed order: unknown keys, parse errors (in KEYS order),
    aws:region, then each validator of `VALIDATORS` in turn (see there)."""
    issues: list[ConfigIssue] = []

    def bad(key: str, value: Any, expected: str) -> None:
        issues.append(ConfigIssue(key, value, expected))

    _check_unknown_keys(raw, bad)
    values = _parse_values(raw, bad)
    region = checked_region(region, bad)
    stack_problem = stack_name_problem(stack)
    if stack_problem:
        bad("stack", stack, stack_problem)
    checks = Checks(values, stack, region, f"{PROJECT}/{stack}/", bad)
    for validator in VALIDATORS:
        validator(checks)
    if issues:
        return None, issues
    assert region is not None
    return _assemble(values, stack, region), []


def _check_unknown_keys(raw: Mapping[str, Any], bad: Report) -> None:
    for key in sorted(raw):
        if key not in KEYS_BY_NAME:
            close = difflib.get_close_matches(key, KEYS_BY_NAME, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            bad(f"{PROJECT}:{key}", raw[key], f"a known key (see Pulumi.yaml){hint}")


# Keys whose change a reviewer and the require guard must be able to read.
REVIEWABLE_KEYS = frozenset({"enforcement", "requireMinReadyPercent"})


def _parse_values(raw: Mapping[str, Any], bad: Report) -> dict[str, Any]:
    """Each key's typed value, or its default when unset; a key that fails to parse is reported
    and left out (validators skip it: `Checks.ok`)."""
    values: dict[str, Any] = {}
    for key in KEYS:
        value = raw.get(key.name)
        if value is None:
            values[key.name] = key.default
        elif key.secret and not isinstance(value, SecretValue):
            bad(key.name, "(plain text, not shown)", f"a secret: pulumi config set --secret {key.name} ...")
        elif key.name in REVIEWABLE_KEYS and isinstance(value, SecretValue):
            bad(key.name, "(a secret)", f"plain text, never --secret: the switch to require is reviewed and guarded by its value (pulumi config set {key.name} ...)")
        else:
            try:
                values[key.name] = _parse(key, value)
            except ValueError as exc:
                bad(key.name, value, str(exc))
    return values


def _egress_groups(values: Mapping[str, Any]) -> dict[str, EgressGroupConfig]:
    """Each egress group on or off, with its extra domains (the crlUrls' hosts first for crl)."""
    disabled = set(values["egressDisabledGroups"])
    extra = {group: list(values[key]) for group, key in EGRESS_DOMAIN_KEYS.items()}
    extra["crl"] = [host for host, _ in map(url_host_problem, values["crlUrls"]) if host] + extra["crl"]
    return {
        group: EgressGroupConfig(
            enabled=group not in disabled and (group not in OPT_IN_GROUPS or bool(values[OPT_IN_GROUPS[group]])),
            extra_domains=tuple(extra.get(group, [])),
        )
        for group in EGRESS_GROUPS
    }


def _warnings(values: Mapping[str, Any]) -> tuple[str, ...]:
    warnings = []
    if values["owner"] == "unassigned" or values["costCentre"] == "unassigned":
        warnings.append("owner/costCentre are 'unassigned': set them so the bill can be attributed")
    if values["allowHttp"]:
        warnings.append("allowHttp is on: port 80 carries no client certificate")
    if "crl" in values["egressDisabledGroups"] and values["revocationChecking"]:
        warnings.append("the crl egress group is off while revocationChecking is on: unless the CRLs are reachable another way, IIS answers 403.13 to every device")
    return tuple(warnings)


def _assemble(values: Mapping[str, Any], stack: str, region: str) -> BeaconConfig:
    """BeaconConfig from values that passed every validator."""
    protection = {"auto": stack.startswith("prod"), "true": True, "false": False}[values["protection"]]
    return BeaconConfig(
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
        egress_groups=_egress_groups(values),
        private_aws_endpoints=values["privateAwsEndpoints"],
        flow_log_retention_days=values["flowLogRetentionDays"],
        firewall_log_retention_days=values["firewallLogRetentionDays"],
        log_kms_key_arn=values["logKmsKeyArn"],
        permissions_boundary_arn=values["permissionsBoundaryArn"],
        alarm_topic_arn=values["alarmTopicArn"],
        protection=protection,
        owner=values["owner"],
        cost_centre=values["costCentre"],
        iis_site_name=values["iisSiteName"],
        enforcement=values["enforcement"],
        flexera_region=values["flexeraRegion"],
        require_min_ready_percent=values["requireMinReadyPercent"],
        iis_log_retention_days=values["iisLogRetentionDays"],
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
        beacon_registration=values["beaconRegistration"],
        warnings=_warnings(values),
    )


def _secret_arn_problem(value: str, region: str | None, stack: str) -> str | None:
    """`secret_arn_problem` for a stack: the secret's name must start with flexnet-beacon/<stack>/."""
    return secret_arn_problem(value, region, f"{PROJECT}/{stack}/")


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
