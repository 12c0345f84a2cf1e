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

export(build(prepared))
