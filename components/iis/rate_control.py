"""State Manager rate controls of the beacons' associations (MaxConcurrency, MaxErrors), as pure values.

The converge association (components/iis/mtls.py) and the CloudWatch agent associations
(components/iis/log_shipping.py) target every beacon of the stack by instance ID, so the number of
targets is known when the program runs and MaxErrors is an absolute count, never a percentage
(whose rounding on small fleets AWS does not document).
"""

from __future__ import annotations

# One beacon at a time: agents fail over to the others while one converges (or restarts after a
# change that needs it).
ASSOCIATION_MAX_CONCURRENCY = "1"
# The SSM API's MaxErrors is a string of at most 7 characters (botocore's ssm service model).
_MAX_ERRORS_CHARACTERS = 7


def association_max_errors(target_count: int) -> str:
    """MaxErrors for an association on `target_count` beacons: max(1, target_count // 2).

    State Manager stops sending the association to further targets when error MaxErrors + 1 is
    received. With MaxErrors 1, two failing beacons (a full disk, a Secrets Manager hiccup) kept
    every later beacon from its run until the next scheduled one. Half the fleet lets a run go on
    past a few failing beacons, while a state or script that fails on most beacons still stops
    the rollout before it reaches all of them. Going on past a failing beacon never opens
    anything: the converge run fails closed (a run that fails leaves no beacon more open than
    before). With MaxConcurrency 1 no other run is in flight when the limit is reached, so no
    more than MaxErrors + 1 runs fail.

    For 1 to 3 beacons this is "1", the value before; it grows from 4 beacons on.
    """
    if target_count < 1:
        raise ValueError(f"association targets: got {target_count!r}; expected an integer of at least 1 (the beacons)")
    value = str(max(1, target_count // 2))
    if len(value) > _MAX_ERRORS_CHARACTERS:
        raise ValueError(
            f"association targets: got {target_count}; expected fewer than {2 * 10**_MAX_ERRORS_CHARACTERS} "
            f"(MaxErrors holds at most {_MAX_ERRORS_CHARACTERS} digits)"
        )
    return value
