"""The hosts of Flexera's cloud an inventory beacon reaches, per Flexera region: data with sources.

Flexera, "Ports and URLs for Inventory Beacons" (Flexera One ITAM help,
docs.flexera.com/flexera/EN/ITAssets/FIB-PortsAndURLs.htm), lists for the North American
instance, all https on 443:
  1. https://app.flexera.com/login: "each inventory beacon accesses this URL only during
     registration and configuration" (sign-in and authentication);
  2. https://app.flexera.com: the web application server;
  3. https://beacon.flexnetmanager.com: the batch server;
  4. https://data.flexnetmanager.com: the inventory server;
and states: "The European instance URLs are identical with the exception of switching the
top-level domain from .com to .eu. And the APAC instance URLs are identical with the exception of
switching the top-level domain from .com to .au." Its item 5, "SSL certificate revocation
servers" on port 80, defers to "Configuring Inventory Beacons for Connection to the Application
Server" for the names; those are the CRL, OCSP and CA-certificate hosts of the CAs that issue the
certificates of the hosts above (they are the same for every region, as the page says: "in both
the .com and .eu domains"). The names below are the ones those certificates carry today, as a
preflight script for Flexera One beacons reads them from the live certificates
(github.com/ultimateunraid/Flexera_PreReq_Check, FlexeraOne-PreReqCheck.ps1, commit b688b33):
Amazon Trust Services (`.amazontrust.com`: ATS rotates intermediates such as r2m02 and sca1b, so
the domain rather than today's hosts), DigiCert (crl3, crl4) and Let's Encrypt (`.c.lencr.org`,
its CRL hosts). Check them against the certificates of your region's hosts when Flexera's CAs
change; `flexeraParentDomains` adds any that is missing.

`on-premises` (FlexNet Manager Suite): nothing of Flexera's cloud; the parent (the application
server or an upstream beacon) is whatever `flexeraParentDomains` names.
"""

from __future__ import annotations

FLEXERA_REGIONS = ("na", "eu", "apac", "on-premises")
# The top-level domain of each cloud region (Flexera: ".com", ".eu", ".au").
REGION_TLD = {"na": "com", "eu": "eu", "apac": "au"}
# Sign-in (ref 1) is app.flexera.<tld>/login: the same host as the web application server.
REGIONAL_HOSTS = ("app.flexera.{tld}", "beacon.flexnetmanager.{tld}", "data.flexnetmanager.{tld}")
REVOCATION_DOMAINS = (".amazontrust.com", "crl3.digicert.com", "crl4.digicert.com", ".c.lencr.org")


def flexera_hosts(region: str) -> tuple[str, ...]:
    """The hosts (and revocation domains) of a Flexera region; () for on-premises."""
    if region == "on-premises":
        return ()
    if region not in REGION_TLD:
        raise ValueError(f"flexeraRegion: got {region!r}; expected one of {', '.join(FLEXERA_REGIONS)}")
    tld = REGION_TLD[region]
    return tuple(host.format(tld=tld) for host in REGIONAL_HOSTS) + REVOCATION_DOMAINS


def describe(region: str, allowlist: dict[str, list[str]]) -> str:
    """One line for the plan summary and `make doctor`: the region and the hosts in effect (the
    flexera-parent egress group as built, flexeraParentDomains included)."""
    hosts = allowlist.get("flexera-parent")
    if hosts is None:
        return f"Flexera region {region}: the flexera-parent egress group is off (egressDisabledGroups)"
    return f"Flexera region {region}: flexera-parent egress allows " + (", ".join(hosts) if hosts else "nothing")
