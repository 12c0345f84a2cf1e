"""Egress allowlist: the cases mutation testing found untested (docs/testing.md, egress)."""

from __future__ import annotations

import pytest

from components import config
from components.network import egress


@pytest.mark.parametrize("host,named", [
    ("Bad_Host.Example.COM", "'bad_host.example.com'"),  # lower-cased, as the allowlist would hold it
    ("Bad_Host.Example.COM.", "'bad_host.example.com'"),  # and without the root's trailing dot
    ("crl.example.com..", "'crl.example.com..'"),  # an empty label is not a trailing dot: named as given
])
def test_refused_certificate_host_is_named_as_the_allowlist_would_hold_it(host: str, named: str) -> None:
    with pytest.raises(ValueError) as refused:
        egress.egress_allowlist(config.load({}, "dev", "us-east-1"), crl_hosts=(host,))
    assert str(refused.value).startswith(f"egress group crl: {named} is not usable: "), str(refused.value)
