"""flexnet-beacon guardrails: a Pulumi CrossGuard policy pack (run with `--policy-pack policy`).

rules.py holds the checks as pure functions; adapt.py converts pulumi_policy's arguments to plain
data; __main__.py only wires the rules into a PolicyPack.
"""
