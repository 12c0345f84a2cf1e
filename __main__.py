"""flexnet-beacon: config -> validate -> components -> exports."""

import pulumi

from components import config
from components.stack import build, export

try:
    beacon_config = config.load(*config.raw_from_pulumi())
except config.ConfigInvalid as invalid:
    # RunError: Pulumi prints the message without a traceback; nothing has been created yet.
    raise pulumi.RunError(invalid.render()) from None

for warning in beacon_config.warnings:
    pulumi.log.warn(warning)

export(build(beacon_config))
