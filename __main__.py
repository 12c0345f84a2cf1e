"""flexnet-beacon: config -> validate -> components -> exports."""

from datetime import datetime, timezone

import pulumi
import pulumi_aws as aws

from components import config
from components.deployability import deploy_gate
from components.iis.state import iis_log_group
from components.require_gate import judged_rules_digest, switch_problem
from components.stack import build, deployed_enforcement, export, prepare

try:
    prepared = prepare(*config.raw_from_pulumi())
except config.ConfigInvalid as invalid:
    # RunError: Pulumi prints the message without a traceback; nothing has been created yet.
    raise pulumi.RunError(invalid.render()) from None

# A protected stack does not deploy what cannot work (placeholder CRL hosts, no server
# certificate, secrets of another account): `pulumi up` stops here, before any resource;
# `pulumi preview` and the offline plan say what would stop it.
caller_account = aws.get_caller_identity().account_id
gate_warnings, blockers = deploy_gate(prepared.cfg, prepared.crl, caller_account, updating=not pulumi.runtime.is_dry_run())
if blockers:
    raise pulumi.RunError(
        f"stack {prepared.cfg.stack} is protected and this update would deploy a beacon that cannot work ({len(blockers)} problems):\n"
        + "\n".join(f"  - {line}" for line in blockers)
    )

# The switch from observe to require is guarded against what is deployed, by the update itself.
deployed, verdict, deployed_before = deployed_enforcement(prepared.cfg.stack)
switch_refused, switch_note = switch_problem(
    prepared.cfg, deployed, verdict, deployed_before, datetime.now(timezone.utc),
    rules_digest=judged_rules_digest(prepared.iis_state["authentication"]["clientCertificateMapping"]),
    log_group=iis_log_group(prepared.cfg),
)
if switch_refused and not pulumi.runtime.is_dry_run():
    raise pulumi.RunError(switch_refused)
if switch_refused:
    gate_warnings.append(f"pulumi up will stop: {switch_refused}")
if switch_note:
    pulumi.log.info(switch_note)

for warning in list(prepared.warnings) + gate_warnings:
    pulumi.log.warn(warning)

try:
    export(build(prepared))
except ValueError as refused:
    # The pure decisions refuse input they cannot turn into safe rules (e.g. a host name that
    # no firewall rule can express): a message, not a traceback.
    raise pulumi.RunError(str(refused)) from None
