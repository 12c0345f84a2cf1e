"""The desired IIS state as the appcmd/netsh/certutil commands an administrator would type.

For review and for people who know the manual article: `build/plan/<stack>/appcmd.txt`. The
converge script, not this text, is what runs. Values cmd.exe cannot quote safely are replaced by
a placeholder with a note, and secrets are always placeholders.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

APPCMD = r"%windir%\system32\inetsrv\appcmd.exe"
_UNSAFE = re.compile(r"""['"%^&|<>!\r\n\x00-\x1f]""")


def _safe(value: Any, what: str, notes: list[str]) -> str:
    text = str(value)
    if _UNSAFE.search(text):
        notes.append(f"REM NOTE: the {what} contains characters cmd.exe/appcmd cannot quote safely; the converge script sets it as data.")
        return f"<{what}>"
    return text


def _flag(value: bool) -> str:
    return "True" if value else "False"


class _Numbers:
    """The REM headings' numbers: steps 1..N, and 2a, 2b... within a step."""

    def __init__(self) -> None:
        self._step = 0
        self._sub = 0

    def step(self) -> int:
        self._step += 1
        self._sub = 0
        return self._step

    def sub(self) -> str:
        self._sub += 1
        return f"{self._step}{chr(ord('a') + self._sub - 1)}"


def render(state: Mapping[str, Any]) -> str:
    """The commands in the converge script's step order (Set-BeaconMtls.ps1: features, lockdown,
    requestFiltering, mimeMaps, logging, serverCertificate, trustStores, schannel, siteBinding,
    httpSys); its steps that have no manual equivalent here are left out."""
    notes: list[str] = []
    site = state["site"]
    site_name = _safe(site["name"], "site name", notes)
    http_sys = state["httpSys"]
    mapping = state["authentication"]["clientCertificateMapping"]
    account = state["mappedAccount"]
    section = "system.webServer/security/authentication/iisClientCertificateMappingAuthentication"
    anonymous = "system.webServer/security/authentication/anonymousAuthentication"
    access = "system.webServer/security/access"
    runtime = "system.webServer/serverRuntime"
    numbers = _Numbers()
    out: list[str] = [
        f"REM flexnet-beacon {state['stack']}: the manual equivalent of the converge script (schema {state['schemaVersion']}).",
        "REM Review aid only: Set-BeaconMtls.ps1 applies this state idempotently through SSM, in the order below.",
        "",
        f"REM {numbers.step()}. Role services (IIS Client Certificate Mapping Authentication is Web-Cert-Auth), no WebDAV",
        "powershell -NoProfile -Command \"Install-WindowsFeature -Name " + ",".join(state["features"]["install"]) + "\"",
        "powershell -NoProfile -Command \"Uninstall-WindowsFeature -Name " + ",".join(state["features"]["remove"]) + "\"",
    ]
    lockdown = numbers.step()
    out += [
        "",
        f"REM {lockdown}. Lock-down: the mapped account, the mappings, the locked sections, then the section locks",
        "REM    The script writes the mappings, every section setting and the section locks below in",
        "REM    ONE IIS commit; appcmd cannot make that one atomic commit (each line commits on its own). Whoever",
        f"REM    types these must not open 443 (the binding steps come last) before every line of step {lockdown} succeeded.",
        "",
        f"REM {numbers.sub()}. Mapped account",
    ]
    user = _safe(account["name"], "account name", notes)
    if account["type"] == "local":
        out.append(f"net user {user} <RANDOM PASSWORD> /add /passwordchg:no")
        # net user has no password-never-expires switch (/expires is the account's own expiry).
        out.append(f"powershell -NoProfile -Command \"Set-LocalUser -Name '{user}' -PasswordNeverExpires $true\"")
        user_name = user
    else:
        domain = _safe(account["domain"], "account domain", notes)
        out.append(f"REM domain account {domain}\\{user}; its password is in Secrets Manager")
        user_name = f"{domain}\\{user}"
    out += [
        "",
        f"REM {numbers.sub()}. Mappings on {site_name}: remove each by its key, then add it (appending twice makes duplicates;",
        "REM    a remove line fails harmlessly when the mapping is not there yet)",
    ]
    for m in mapping["manyToOneMappings"]:
        name = _safe(m["name"], "mapping name", notes)
        out.append(f'{APPCMD} set config "{site_name}" -section:{section} /-"manyToOneMappings.[name=\'{name}\']" /commit:apphost')
        out.append(
            f'{APPCMD} set config "{site_name}" -section:{section} '
            f"/+\"manyToOneMappings.[name='{name}',enabled='{_flag(m['enabled'])}',permissionMode='{m['permissionMode']}',"
            f"userName='{user_name}',password='<ACCOUNT PASSWORD>']\" /commit:apphost"
        )
        for rule in m["rules"]:
            match = _safe(rule["matchCriteria"], "match criteria", notes)
            out.append(
                f'{APPCMD} set config "{site_name}" -section:{section} '
                f"/+\"manyToOneMappings.[name='{name}'].rules.[certificateField='{rule['certificateField']}',"
                f"certificateSubField='{rule['certificateSubField']}',matchCriteria='{match}',"
                f"compareCaseSensitive='{_flag(rule['compareCaseSensitive'])}']\" /commit:apphost"
            )
    for m in mapping["oneToOneMappings"]:
        out.append(
            f'{APPCMD} set config "{site_name}" -section:{section} '
            f"/-\"oneToOneMappings.[certificate='<BASE64 OF {m['thumbprint']}>']\" /commit:apphost"
        )
        out.append(
            f'{APPCMD} set config "{site_name}" -section:{section} '
            f"/+\"oneToOneMappings.[certificate='<BASE64 OF {m['thumbprint']}>',enabled='{_flag(m['enabled'])}',"
            f"userName='{user_name}',password='<ACCOUNT PASSWORD>']\" /commit:apphost"
        )
    out += [
        "",
        f"REM {numbers.sub()}. Locked sections at apphost with a location path (web.config would give 500.19); after the",
        "REM    mappings, so no moment has the mapping on with no mapping, or certificates required with anonymous on",
    ]
    # (location, section) in the script's order (Get-LockdownSetting), each locked once at the end.
    locks: list[tuple[str, str]] = []
    for location in site["locations"]:
        loc = _safe(location, "location path", notes)
        out += [
            f'{APPCMD} set config "{loc}" -section:{section} /enabled:"{_flag(mapping["enabled"])}" '
            f'/manyToOneCertificateMappingsEnabled:"{_flag(mapping["manyToOneCertificateMappingsEnabled"])}" '
            f'/oneToOneCertificateMappingsEnabled:"{_flag(mapping["oneToOneCertificateMappingsEnabled"])}" /commit:apphost',
            f'{APPCMD} set config "{loc}" -section:{anonymous} /enabled:"{_flag(state["authentication"]["anonymousEnabled"])}" /commit:apphost',
            f'{APPCMD} set config "{loc}" -section:{access} /sslFlags:"{state["access"]["sslFlags"]}" /commit:apphost',
        ]
        locks += [(loc, section), (loc, anonymous), (loc, access)]
    override = state.get("serverRuntime") or {}
    if override.get("locations"):
        out += ["", f"REM {numbers.sub()}. Downloads and uploads read and write files as the worker process, not the mapped account"]
        for location in override["locations"]:
            loc = _safe(location, "location path", notes)
            out.append(
                f'{APPCMD} set config "{loc}" -section:{runtime} '
                f'/authenticatedUserOverride:"{override["authenticatedUserOverride"]}" /commit:apphost'
            )
            locks.append((loc, runtime))
    out += [
        "",
        f"REM {numbers.sub()}. Lock each of these sections where it is set (overrideMode Deny in applicationHost.config), as the",
        "REM    script does after its commit, so no web.config at the site or an application overrides it (500.19 instead)",
    ]
    for loc, locked in dict.fromkeys(locks):
        out.append(f'{APPCMD} lock config "{loc}" -section:{locked} /commit:apphost')
    out += [
        "",
        f"REM {numbers.step()}. Request filtering: allow the FlexNet file extensions (remove first: an existing or inherited",
        "REM    entry makes a plain add fail; the remove fails harmlessly when there is none)",
    ]
    for ext in state["requestFiltering"]["allowExtensions"]:
        out.append(
            f'{APPCMD} set config "{site_name}" -section:system.webServer/security/requestFiltering '
            f"/-\"fileExtensions.[fileExtension='{ext}']\" /commit:apphost"
        )
        out.append(
            f'{APPCMD} set config "{site_name}" -section:system.webServer/security/requestFiltering '
            f"/+\"fileExtensions.[fileExtension='{ext}',allowed='True']\" /commit:apphost"
        )
    out += [
        "",
        f"REM {numbers.step()}. MIME maps of the agent files at {site_name} (IIS serves no extension without one: 404.3)",
        "REM    No remove first: an entry IIS already applies (inherited or from a web.config) is left as it is",
    ]
    for entry in (state.get("staticContent") or {}).get("mimeMaps", []):
        ext = _safe(entry["fileExtension"], "MIME map extension", notes)
        mime = _safe(entry["mimeType"], "MIME type", notes)
        out += [
            f"REM {ext}: the script adds it only where IIS does not already serve {ext} at the site or an application",
            f"REM    (see appcmd list config \"{site_name}\" -section:staticContent); adding it a second time fails",
            f'{APPCMD} set config "{site_name}" -section:staticContent /+"[fileExtension=\'{ext}\',mimeType=\'{mime}\']" /commit:apphost',
        ]
    logging = state.get("logging") or {}
    if logging:
        out += [
            "",
            f"REM {numbers.step()}. W3C logging, server-wide, with the client certificate's facts (add the fields below to the ones there)",
            f'{APPCMD} set config -section:system.applicationHost/sites /siteDefaults.logFile.logFormat:"W3C" /commit:apphost',
            f'{APPCMD} set config -section:system.applicationHost/sites /siteDefaults.logFile.logExtFileFlags:"{",".join(logging["fields"])}" /commit:apphost',
        ]
        for field in logging["customFields"]:
            key = f"siteDefaults.logFile.customFields.[logFieldName='{field['logFieldName']}']"
            out.append(f'{APPCMD} set config -section:system.applicationHost/sites /-"{key}" /commit:apphost')
            out.append(
                f"{APPCMD} set config -section:system.applicationHost/sites /+\"siteDefaults.logFile.customFields.[logFieldName='{field['logFieldName']}',"
                f"sourceName='{field['sourceName']}',sourceType='{field['sourceType']}']\" /commit:apphost"
            )
    out += [
        "",
        f"REM {numbers.step()}. Server certificate (Client and Server Authentication EKU) into LocalMachine\\My",
    ]
    if state.get("serverCertificate"):
        out.append("certutil -f -p <PFX password from Secrets Manager> -importpfx My beacon.pfx")
    else:
        out.append("REM serverCertificateSecretArn is not set: no server certificate to import yet")
    out += [
        "",
        f"REM {numbers.step()}. Trust stores: roots to Root, intermediates to CA, issuing CAs to ClientAuthIssuer",
    ]
    for entry in state["trustStores"]:
        out.append(f"certutil -addstore {entry['store']} {entry['thumbprint']}.cer  & REM {_safe(entry['subject'], 'certificate subject', notes)}")
    out += [
        "",
        f"REM {numbers.step()}. SChannel client authentication trust mode",
        "reg add HKLM\\SYSTEM\\CurrentControlSet\\Control\\SecurityProviders\\SCHANNEL /v ClientAuthTrustMode "
        f"/t REG_DWORD /d {state['schannel']['clientAuthTrustMode']} /f",
        "reg add HKLM\\SYSTEM\\CurrentControlSet\\Control\\SecurityProviders\\SCHANNEL /v SendTrustedIssuerList "
        f"/t REG_DWORD /d {1 if state['schannel'].get('sendTrustedIssuerList') else 0} /f",
        "REM SChannel reads both at start-up: restart Windows after changing them",
        "",
        f"REM {numbers.step()}. Last: 443 opens only now, after every line of step {lockdown} (lock-down) succeeded",
        "REM    (re-assert both after every renewal or rebinding)",
        f"REM {numbers.sub()}. https binding",
        f'{APPCMD} set site /site.name:"{site_name}" /+bindings.[protocol=\'https\',bindingInformation=\'*:{site["httpsPort"]}:\']',
        f"REM {numbers.sub()}. HTTP.sys record",
        "REM update keeps 443 serving with its flags; the first time (no record yet) use add instead of update",
        " ".join(
            [
                f"netsh http update sslcert ipport={http_sys['ipPort']} certhash=<SERVER CERTIFICATE THUMBPRINT>",
                f"appid={http_sys['appId']} certstorename={http_sys['certStoreName']}",
                f"verifyclientcertrevocation={'enable' if http_sys['verifyClientCertRevocation'] else 'disable'}",
                f"verifyrevocationwithcachedclientcertonly={'enable' if http_sys['verifyRevocationWithCachedClientCertOnly'] else 'disable'}",
                f"usagecheck={'enable' if http_sys['usageCheck'] else 'disable'}",
                f"revocationfreshnesstime={http_sys['revocationFreshnessTime']}",
                f"urlretrievaltimeout={http_sys['urlRetrievalTimeout']}",
                *([f"sslctlstorename={http_sys['sslCtlStoreName']}"] if http_sys.get("sslCtlStoreName") else []),
                f"clientcertnegotiation={'enable' if http_sys['clientCertNegotiation'] else 'disable'}",
            ]
        ),
    ]
    if notes:
        out += [""] + sorted(set(notes))
    return "\n".join(out) + "\n"
