"""The whole deployment from a validated BeaconConfig: decisions first, then components."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from .require_gate import earlier_deployment_parameter, enforcement_parameter, enforcement_record, verdict_parameter
from .tagging import component_tags
from .iis.agent_config import httperr_log_group_name
from .beacon import policy as beacon_policy
from .beacon.policy import ssm_agent_buckets
from .beacon.host import BeaconHost, BeaconHostArgs
from .config import PROJECT, BeaconConfig, ConfigInvalid, load
from .network.egress import AWS_API_SERVICES, egress_allowlist
from .network.dns_rules import dns_allowlist
from .network.endpoints import dns_names, endpoint_policy, stack_buckets
from .network.firewall_rules import rule_groups
from .iis.mtls import BeaconMtls, BeaconMtlsArgs
from .iis.log_shipping import IisLogShipping, IisLogShippingArgs
from .iis.state import MappingNameClash, converge_log_group, desired_state, iis_log_group
from .network.layout import beacon_zone_indexes, split_vpc, vpc_resolver_ip
from .network.vpc import BeaconNetwork, BeaconNetworkArgs
from .iis.document import read_converge_script, read_user_data
from .iis.state_bucket import ConvergeStateBucket, ConvergeStateBucketArgs
from .deployability import deployability_warnings
from .tagging import base_tags
from .config import ConfigIssue
from .certs.hosting import CrlHosting, CrlHostingArgs
from .certs.trust import (
    ClientTrust,
    CrlEgress,
    LoadedCertificate,
    classify,
    crl_egress,
    crl_hosting_base_url,
    device_crl_known,
    load_certificate_files,
    sample_issuer_problem,
)

AGENT_PATHS = {"download": "/ManageSoftDL/", "upload": "/ManageSoftRL/"}
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The directory the config's certificate files are relative to (and must stay inside): the
# project, unless this variable names another one (tests, and run_program(base=...), use it to
# plan with certificate files of a temporary project directory).
PROJECT_DIR_ENV = "FLEXNET_BEACON_PROJECT_DIR"


def project_dir() -> Path:
    given = os.environ.get(PROJECT_DIR_ENV)
    return Path(given) if given else PROJECT_ROOT


@dataclass(frozen=True)
class Prepared:
    """Everything decided before the first resource: config, trust material, IIS state."""

    cfg: BeaconConfig
    trust: ClientTrust
    one_to_one: tuple[LoadedCertificate, ...]
    crl: CrlEgress
    iis_state: dict[str, Any]
    warnings: tuple[str, ...]
    allowlist: dict[str, list[str]]
    dns_allowlist: list[str]  # Route 53 Resolver DNS Firewall: the same allowlist, in DNS form

    @property
    def egress_ports(self) -> list[int]:
        """Configured egress ports plus the ports of the CRL URLs."""
        return sorted(set(self.cfg.egress_ports) | set(self.crl.ports))

    @property
    def crl_hosting_url(self) -> str:
        return crl_hosting_base_url(self.cfg.crl_bucket_name, self.cfg.region) if self.cfg.crl_hosting == "s3" else ""


def prepare(raw: Mapping[str, Any], stack: str, region: str | None, base: Path | None = None) -> Prepared:
    """Validate config and read the certificate files (inside ``base``, default
    :func:`project_dir`); ConfigInvalid lists every problem."""
    base = project_dir() if base is None else base
    cfg = load(raw, stack, region)
    cas, issues = load_certificate_files("clientCaCertificates", cfg.client_ca_certificates, base)
    devices, device_issues = load_certificate_files("oneToOneCertificates", cfg.one_to_one_certificates, base)
    issues += device_issues
    samples: list[LoadedCertificate] = []
    if cfg.sample_device_certificate:
        samples, sample_issues = load_certificate_files("sampleDeviceCertificate", [cfg.sample_device_certificate], base)
        issues += sample_issues
    trust = None
    if not issues:
        trust, trust_issues = classify(cas)
        issues += trust_issues
    if trust is not None and samples:
        mismatch = sample_issuer_problem(samples[0], trust)
        issues += [mismatch] if mismatch else []
    if issues or trust is None:
        raise ConfigInvalid(issues)
    hosting = crl_hosting_base_url(cfg.crl_bucket_name, cfg.region) if cfg.crl_hosting == "s3" else ""
    crl = crl_egress(trust, samples[0] if samples else None, cfg.crl_urls, hosting)
    if cfg.revocation_checking and not device_crl_known(crl):
        raise ConfigInvalid(
            [
                ConfigIssue(
                    "crlUrls",
                    list(cfg.crl_urls),
                    "a CRL URL for the device certificates (crlUrls, a sampleDeviceCertificate whose CDP is http(s), "
                    "or crlHosting s3): with revocationChecking on and no reachable CRL, IIS answers 403.13 to every device",
                )
            ]
        )
    warnings = tuple(cfg.warnings) + tuple(f"CRL URL ignored: {entry}" for entry in crl.ignored)
    if cfg.protection and not cfg.availability_zones:
        warnings += (
            "availabilityZones is unset on a protected stack: the program takes the region's first zones; "
            "pin them with availabilityZones (the stack output availabilityZoneIds shows which physical zones they are)",
        )
    warnings += tuple(deployability_warnings(cfg, crl))
    try:
        state = desired_state(cfg, trust, devices, crl.urls)
    except MappingNameClash as clash:  # IIS keys mappings by name: a second one of a name is refused on every run
        raise ConfigInvalid([ConfigIssue("clientCaCertificates", clash.source, str(clash))]) from None
    try:  # every domain must be expressible as a firewall rule before anything is created
        allowlist = egress_allowlist(cfg, crl_hosts=crl.hosts)
    except ValueError as refused:
        raise ConfigInvalid([ConfigIssue("crlDomains", list(crl.hosts), str(refused))]) from None
    s3_names = dns_names(cfg.region, ssm_agent_buckets(cfg.region) + stack_buckets(cfg))
    dns = dns_allowlist(allowlist, cfg.region, cfg.vpc_cidr, s3_names)
    return Prepared(cfg, trust, tuple(devices), crl, state, warnings, allowlist, dns)


def availability_zones(cfg: BeaconConfig) -> dict[str, str]:
    """The stack's zones, name -> zone id, in the order their subnets are laid out.

    Every zone the account can use is listed, whatever its state today: a zone turning
    "impaired" must not shift the program's choice (that would move subnets and replace
    beacons). The zone ids go to the stack outputs so operators can pin the physical zones.
    """
    found = aws.get_availability_zones(
        filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])],
    )
    zone_ids = dict(zip(found.names, found.zone_ids))
    names = sorted(zone_ids)
    if cfg.availability_zones:
        unknown = [zone for zone in cfg.availability_zones if zone not in zone_ids]
        if unknown:
            raise pulumi.RunError(
                f"availabilityZones: got {', '.join(unknown)}; expected zones of {cfg.region}: {', '.join(names)}"
            )
        return {zone: zone_ids[zone] for zone in cfg.availability_zones}
    if len(names) < cfg.az_count:
        raise pulumi.RunError(
            f"azCount: got {cfg.az_count}; expected at most {len(names)}, the zones of {cfg.region}: {', '.join(names)}"
        )
    return {zone: zone_ids[zone] for zone in names[: cfg.az_count]}


def agent_urls(hostname: str) -> dict[str, str]:
    return {kind: f"https://{hostname}{path}" for kind, path in AGENT_PATHS.items()}


def deployed_enforcement(stack: str) -> tuple[str | None, str | None, bool]:
    """(the enforcement record, the recorded readiness verdict, whether the stack was deployed
    before the record existed), read from the stack's SSM parameters before any resource.

    One GetParametersByPath of the stack's own prefix: a missing parameter is simply absent from
    the answer (a get_parameter of a missing name is an invoke error, and the Python SDK fails the
    program for it even when caught). Any other error stops the program: fail closed."""
    found = aws.ssm.get_parameters_by_path(path=f"/{PROJECT}/{stack}/", recursive=False, with_decryption=False)
    values = dict(zip(found.names, found.values))
    record = values.get(enforcement_parameter(stack))
    # Deployed before without a record: an earlier version's stack (its CloudWatch agent parameter),
    # or one destroyed and created again (the verdict parameter is written by `ops readiness`, not
    # by Pulumi, so a destroy leaves it): guarded, not "never deployed".
    before = record is None and (earlier_deployment_parameter(stack) in values or verdict_parameter(stack) in values)
    return record, values.get(verdict_parameter(stack)), before


def build(prepared: Prepared) -> dict[str, Any]:
    """Create every resource; return the stack outputs."""
    cfg = prepared.cfg
    zone_ids = availability_zones(cfg)
    zones = split_vpc(cfg.vpc_cidr, list(zone_ids))
    allowlist = prepared.allowlist
    tags = base_tags(cfg)

    account_id = aws.get_caller_identity_output().account_id
    # The converge script and desired state live in the stack's own bucket (any size); the
    # network's endpoint policy and DNS firewall, and the beacon role, name it.
    converge_bucket = ConvergeStateBucket(
        "converge", ConvergeStateBucketArgs(stack=cfg.stack, region=cfg.region, protection=cfg.protection, tags=tags)
    )
    network = BeaconNetwork(
        "net",
        BeaconNetworkArgs(
            vpc_cidr=cfg.vpc_cidr,
            zones=zones,
            rule_groups=rule_groups(
                vpc_cidr=cfg.vpc_cidr,
                beacon_cidrs=[z.protected_cidr for z in zones],
                agent_cidrs=cfg.allowed_ingress_cidrs,
                allow_http=cfg.allow_http,
                egress_ports=prepared.egress_ports,
                allowlist=allowlist,
            ),
            protection=cfg.protection,
            log_group_prefix=f"/{PROJECT}/{cfg.stack}",
            firewall_log_group_prefix=f"/aws/vendedlogs/{PROJECT}/{cfg.stack}",
            region=cfg.region,
            account_id=account_id,
            flow_log_retention_days=cfg.flow_log_retention_days,
            firewall_log_retention_days=cfg.firewall_log_retention_days,
            log_kms_key_arn=cfg.log_kms_key_arn,
            permissions_boundary_arn=cfg.permissions_boundary_arn,
            s3_endpoint_policy=converge_bucket.name.apply(lambda bucket: endpoint_policy(cfg.region, stack_buckets(cfg) + [bucket])),
            interface_endpoint_services=AWS_API_SERVICES if cfg.private_aws_endpoints else (),
            dns_allowed_domains=converge_bucket.name.apply(
                lambda bucket: sorted(set(prepared.dns_allowlist) | set(dns_names(cfg.region, [bucket])))
            ),
            resource_name_prefix=f"{PROJECT}-{cfg.stack}",
            tags=tags,
        ),
    )

    ami_id = cfg.ami_id or aws.ssm.get_parameter_output(name=beacon_policy.WINDOWS_2022_AMI_PARAMETER).value
    hosts: list[BeaconHost] = []
    for i, zone_index in enumerate(beacon_zone_indexes(cfg.beacon_count, len(zones))):
        zone = zones[zone_index]
        hosts.append(
            BeaconHost(
                f"beacon-{i + 1}",
                BeaconHostArgs(
                    index=i,
                    region=cfg.region,
                    account_id=account_id,
                    vpc_id=network.vpc.id,
                    subnet_id=network.protected_subnets[zone_index].id,
                    availability_zone=zone.availability_zone,
                    ami_id=ami_id,
                    ami_pinned=bool(cfg.ami_id),
                    instance_type=cfg.instance_type,
                    root_volume_gb=cfg.root_volume_gb,
                    allowed_ingress_cidrs=cfg.allowed_ingress_cidrs,
                    allow_http=cfg.allow_http,
                    egress_ports=prepared.egress_ports,
                    resolver_ip=vpc_resolver_ip(cfg.vpc_cidr),
                    name_prefix=cfg.name_prefix,
                    protection=cfg.protection,
                    hostname=cfg.beacon_hostnames[i] if cfg.beacon_hostnames else "",
                    permissions_boundary_arn=cfg.permissions_boundary_arn,
                    alarm_topic_arn=cfg.alarm_topic_arn,
                    # Static: the desired state travels in the SSM document, so no rule, CA or
                    # certificate change can alter (or replace) an instance.
                    user_data=read_user_data(),
                    log_groups=(converge_log_group(cfg), iis_log_group(cfg), httperr_log_group_name(iis_log_group(cfg))),
                    installer_s3_uri=cfg.beacon_installer_s3_uri,
                    converge_bucket=converge_bucket.name,
                    tags=tags,
                ),
                # The beacon boots into a network whose routes and firewall already exist, so
                # its first converge run can reach SSM and the CRL hosts.
                opts=ResourceOptions(depends_on=[network]),
            )
        )

    mtls = BeaconMtls(
        "mtls",
        BeaconMtlsArgs(
            state=prepared.iis_state,
            script=read_converge_script(),
            state_bucket=converge_bucket.name,
            region=cfg.region,
            timeout_seconds=cfg.converge_timeout_seconds,
            instance_ids=[host.instance.id for host in hosts],
            schedule_expression=cfg.converge_schedule,
            compliance_severity=cfg.compliance_severity,
            association_name=f"{PROJECT}-{cfg.stack}-mtls",
            log_group_name=converge_log_group(cfg),
            log_retention_days=cfg.firewall_log_retention_days,
            log_kms_key_arn=cfg.log_kms_key_arn,
            retain_logs=cfg.protection,
            tags=tags,
        ),
    )

    iis_logs = IisLogShipping(
        "iis-logs",
        IisLogShippingArgs(
            instance_ids=[host.instance.id for host in hosts],
            log_group_name=iis_log_group(cfg),
            parameter_name=f"/{cfg.name_prefix.rstrip('/')}/cloudwatch-agent",
            association_prefix=f"{PROJECT}-{cfg.stack}",
            log_retention_days=cfg.iis_log_retention_days,
            log_kms_key_arn=cfg.log_kms_key_arn,
            retain_logs=cfg.protection,
            tags=tags,
        ),
    )

    # What is deployed, for the next update's guard of observe -> require (components/require_gate.py).
    enforcement_record_parameter = aws.ssm.Parameter(
        "enforcement-record",
        aws.ssm.ParameterArgs(
            name=enforcement_parameter(cfg.stack),
            type="String",
            insecure_value=enforcement_record(cfg),  # not secret: state and preview show it
            description="flexnet-beacon: the enforcement and requireMinReadyPercent this stack deployed (read by pulumi up to guard observe -> require)",
            tags=component_tags(tags, "require-gate", "enforcement-record"),
        ),
        # Written after the converge objects, document and association have taken the new state:
        # a failed or --target'ed update must not record require while the beacons still observe.
        opts=ResourceOptions(depends_on=[mtls]),
    )

    outputs: dict[str, Any] = {}
    if cfg.crl_hosting == "s3":
        hosting = CrlHosting(
            "crl",
            CrlHostingArgs(bucket_name=cfg.crl_bucket_name, region=cfg.region, base_url=prepared.crl_hosting_url, tags=tags),
        )
        outputs["crlHosting"] = {"bucket": hosting.bucket.id, "baseUrl": hosting.base_url}

    return outputs | {
        "enforcement": cfg.enforcement,
        "requireMinReadyPercent": cfg.require_min_ready_percent,
        "enforcementRecord": enforcement_record_parameter.name,
        "vpcId": network.vpc.id,
        "firewallSubnetIds": [s.id for s in network.firewall_subnets],
        "protectedSubnetIds": [s.id for s in network.protected_subnets],
        "firewallArn": network.firewall.firewall.arn,
        "firewallEndpoints": network.endpoint_ids,
        # Zone names map to different physical zones in each account; the ids pin them.
        "availabilityZoneIds": zone_ids,
        "logGroups": {
            "vpcFlow": network.flow_log_group.name,
            "firewallAlert": network.firewall.log_groups["ALERT"].name,
            "firewallFlow": network.firewall.log_groups["FLOW"].name,
            "dnsQueries": network.dns_firewall.query_log_group.name,
            "iis": iis_logs.log_group.name,
            "httperr": iis_logs.httperr_log_group.name,
            "converge": mtls.log_group.name,
        },
        "mtls": {
            "documentName": mtls.document.name,
            "associationId": mtls.association.association_id,
            "stateDigest": mtls.state_digest,
            "scriptDigest": mtls.script_digest,
            "stateBucket": converge_bucket.name,
            "mappingMode": cfg.mapping_mode,
            "issuerRules": [m["rules"][0]["matchCriteria"] for m in prepared.iis_state["authentication"]["clientCertificateMapping"]["manyToOneMappings"] if m["permissionMode"] == "Allow"],
        },
        "egressAllowlist": allowlist,
        "crlEgress": prepared.crl.as_output(),
        "beacons": [
            {
                "name": f"beacon-{i + 1}",
                "availabilityZone": zones[zone_index].availability_zone,
                "instanceId": host.instance.id,
                "publicIp": host.public_ip,
                "publicDns": host.public_dns,
                "hostname": host.hostname,
                "agentUrls": host.hostname.apply(agent_urls),
            }
            for i, (host, zone_index) in enumerate(zip(hosts, beacon_zone_indexes(cfg.beacon_count, len(zones))))
        ],
    }


def export(outputs: dict[str, Any]) -> None:
    for key, value in outputs.items():
        pulumi.export(key, value)
