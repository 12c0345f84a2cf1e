"""Every AWS name the stack name becomes part of, with the limit AWS sets for it: stack names are
checked against all of them before any resource is declared.

Each entry: what it names, the name with `{stack}` in it, and the AWS API shape that limits it
(botocore's service model: `tests/test_stack_names.py` reads the shape's max length and pattern from
botocore itself, so a limit written down wrong here fails there). Names only the provider derives
(S3 bucket prefix: components/iis/state_bucket.py cuts it to fit; IAM roles, security groups:
Pulumi's auto-names) are not listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The project's name (components/config.py PROJECT; a test keeps them equal, an import would cycle).
PROJECT_NAME = "flexnet-beacon"


@dataclass(frozen=True)
class StackName:
    what: str
    template: str  # with {stack}
    service: str  # botocore service name
    shape: str  # botocore shape of the name
    max_length: int
    pattern: str  # the shape's pattern (re syntax), matched against the whole name

    def render(self, stack: str) -> str:
        return self.template.format(stack=stack)


_RESOLVER_NAME = r"(?!^[0-9]+$)([a-zA-Z0-9\-_' ']+)"
_SSM_ASSOCIATION = r"^[a-zA-Z0-9_\-.]{3,128}$"
_LOG_GROUP = r"[\.\-_/#A-Za-z0-9]+"

STACK_NAMES = (
    StackName("Route 53 Resolver DNS Firewall domain list", f"{PROJECT_NAME}-{{stack}}-everything", "route53resolver", "Name", 64, _RESOLVER_NAME),
    StackName("Route 53 Resolver DNS Firewall domain list", f"{PROJECT_NAME}-{{stack}}-allowed", "route53resolver", "Name", 64, _RESOLVER_NAME),
    StackName("Route 53 Resolver DNS Firewall rule group and query log configuration", f"{PROJECT_NAME}-{{stack}}-dns", "route53resolver", "Name", 64, _RESOLVER_NAME),
    StackName("State Manager association", f"{PROJECT_NAME}-{{stack}}-mtls", "ssm", "AssociationName", 128, _SSM_ASSOCIATION),
    StackName("State Manager association", f"{PROJECT_NAME}-{{stack}}-cloudwatch-agent-install", "ssm", "AssociationName", 128, _SSM_ASSOCIATION),
    StackName("State Manager association", f"{PROJECT_NAME}-{{stack}}-cloudwatch-agent-configure-0123456789ab", "ssm", "AssociationName", 128, _SSM_ASSOCIATION),
    StackName("CloudWatch Logs log group", f"/aws/vendedlogs/{PROJECT_NAME}/{{stack}}/firewall-alert", "logs", "LogGroupName", 512, _LOG_GROUP),
    StackName("CloudWatch Logs log group", f"/{PROJECT_NAME}/{{stack}}/cloudwatch-agent", "logs", "LogGroupName", 512, _LOG_GROUP),
)


def stack_name_problem(stack: str) -> str | None:
    """What a valid stack name looks like, when this one is not; None when every name fits."""
    for name in STACK_NAMES:
        rendered = name.render(stack)
        if len(rendered) > name.max_length or not re.fullmatch(name.pattern, rendered):
            longest = min(n.max_length - len(n.render("")) for n in STACK_NAMES)
            return (
                f"a stack name of 1 to {longest} letters, digits, '-' or '_' (it becomes part of the {name.what} name "
                f"{rendered!r}: at most {name.max_length} characters matching {name.pattern})"
            )
    return None
