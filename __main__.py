"""flexnet-beacon: config -> validate -> components -> exports."""

import pulumi

from components import config
from components.stack import build, export, prepare

try:
    prepared = prepare(*config.raw_from_pulumi())
except config.ConfigInvalid as invalid:
    # RunError: Pulumi prints the message without a traceback; nothing has been created yet.
    raise pulumi.RunError(invalid.render()) from None

for warning in prepared.warnings:
    pulumi.log.warn(warning)

try:
    export(build(prepared))
except ValueError as refused:
    # The pure decisions refuse input they cannot turn into safe rules (e.g. a host name that
    # no firewall rule can express): a message, not a traceback.
    raise pulumi.RunError(str(refused)) from None
