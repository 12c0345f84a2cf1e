"""The converge report of components/iis/windows/Set-BeaconMtls.ps1: find it in a command's output,
judge it, and show it as a table per beacon.

The script prints ONE JSON object (schemaVersion 1). Exit codes: 0 compliant, converged, or in
report-only mode drift or reboot-pending; 1 failed; 3010 a change needs a restart (SSM Agent
restarts the instance and runs the step again); 4 a restart was asked for and has not happened.
Scripts before issue 12 exited 3 for report-only drift. Other lines may surround the report
(warnings, the SSM agent's own lines), keys may be added (steps, checks.locations, checks.reboot
came with issue 12; older reports lack them) and Windows PowerShell 5.1 may turn a one-element
array into the element: the reader takes the last JSON object that looks like a report and
ignores keys it does not know.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, TypeGuard

from components.iis.state import SSL_FLAGS, SSL_FLAGS_OBSERVE

from .common import as_list, days_left, parse_time, short, table

STATUSES = ("compliant", "converged", "drift", "failed", "reboot-pending")
EXIT_CODES = {
    0: "compliant or converged; in report-only mode also drift or reboot-pending",
    1: "failed",
    3: "drift (report-only, scripts before issue 12)",
    4: "a restart was asked for and has not happened yet",
    3010: "a change needs a restart: SSM Agent restarts the instance and runs the step again",
}
# A restart asked for (exit 3010) and still not done after this long is a failure, not a transition.
REBOOT_OVERDUE = dt.timedelta(hours=1)
# What each enforcement puts at the site and both applications (components/iis/state.py).
SSL_FLAGS_BY_MODE = {"require": frozenset(SSL_FLAGS.split(",")), "observe": frozenset(SSL_FLAGS_OBSERVE.split(","))}
ANONYMOUS_BY_MODE = {"require": False, "observe": True}  # observe: a device without a certificate still gets in
SSM_OUTPUT_LIMIT = 24000  # characters of StandardOutputContent that GetCommandInvocation returns
_COMPUTER = re.compile(r'"computer"\s*:\s*"([^"\\]{1,64})"')

# HTTP.sys read-back (netsh names, see Get-HttpSysBinding) <- desired state (iis_state httpSys).
HTTPSYS_FIELDS = (
    ("ipport", "ipPort", "text"),
    ("appid", "appId", "text"),
    ("certstorename", "certStoreName", "text"),
    ("verifyclientcertrevocation", "verifyClientCertRevocation", "switch"),
    ("verifyrevocationwithcachedclientcertonly", "verifyRevocationWithCachedClientCertOnly", "switch"),
    ("usagecheck", "usageCheck", "switch"),
    ("revocationfreshnesstime", "revocationFreshnessTime", "int"),
    ("urlretrievaltimeout", "urlRetrievalTimeout", "int"),
    ("sslctlstorename", "sslCtlStoreName", "text"),
    ("clientcertnegotiation", "clientCertNegotiation", "switch"),
)


class ReportError(ValueError):
    """No usable report in the output."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def looks_like_report(value: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict) and "status" in value and ("checks" in value or "schemaVersion" in value)


def extract_report(text: str | None) -> dict[str, Any]:
    """The last report object in the text (the whole text, a line, or an object among lines)."""
    if not text or not text.strip():
        raise ReportError("the command printed nothing on stdout")
    stripped = text.strip().lstrip("\ufeff")
    try:
        whole = json.loads(stripped)
    except ValueError:
        whole = None
    if looks_like_report(whole):
        return whole
    decoder = json.JSONDecoder()
    found = None
    position = stripped.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(stripped, position)
        except ValueError:
            position = stripped.find("{", position + 1)
            continue
        if looks_like_report(value):
            found = value
        position = stripped.find("{", end)
    if found is None:
        if len(text) >= SSM_OUTPUT_LIMIT:
            raise ReportError(f"stdout was cut at {SSM_OUTPUT_LIMIT} characters by SSM before the report ended")
        raise ReportError("no JSON report (an object with status and checks) in stdout")
    return found


def computer_name(text: str | None) -> str | None:
    """The computer name from the start of a (possibly truncated) report."""
    m = _COMPUTER.search(text or "")
    return m.group(1) if m else None


@dataclass
class Check:
    name: str
    result: str  # ok | warn | fail
    detail: str
    items: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "result": self.result, "detail": self.detail, "items": self.items}


def _switch(value: Any) -> str:
    if isinstance(value, bool):
        return "enable" if value else "disable"
    text = str(value).strip().lower()
    return {"true": "enable", "enabled": "enable", "false": "disable", "disabled": "disable"}.get(text, text)


def _flags(value: Any) -> set[str]:
    return {p.strip() for p in str(value or "").split(",") if p.strip()}


def wanted_httpsys(desired: Mapping[str, Any] | None, thumbprint: str | None) -> dict[str, Any]:
    """The netsh values HTTP.sys must have; without a desired state, the ones mTLS cannot do without."""
    if not desired or not isinstance(desired.get("httpSys"), dict):
        wanted: dict[str, Any] = {"clientcertnegotiation": "enable"}
    else:
        http = desired["httpSys"]
        wanted = {}
        for netsh, key, kind in HTTPSYS_FIELDS:
            if key not in http:
                continue
            value = http[key]
            if kind == "switch":
                wanted[netsh] = _switch(value)
            elif kind == "int":
                wanted[netsh] = int(value)
            else:
                wanted[netsh] = value
    if thumbprint:
        wanted["certhash"] = thumbprint.upper()
    return wanted


def httpsys_differences(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    kinds = {netsh: kind for netsh, _, kind in HTTPSYS_FIELDS}
    out = []
    for name, want in wanted.items():
        have = current.get(name)
        kind = kinds.get(name, "text")
        if kind == "switch":
            same = _switch(have) == _switch(want)
        elif kind == "int":
            try:
                same = have is not None and int(have) == int(want)
            except (TypeError, ValueError):
                same = False
        elif want is None or want == "":
            same = have in (None, "", "(null)")
        else:
            same = str(have or "").strip().lower() == str(want).strip().lower()
        if not same:
            out.append(f"{name}={have if have not in (None, '') else '(none)'} (desired {want if want not in (None, '') else '(none)'})")
    return out


def _shown(value: Any) -> str:
    return "(none)" if value in (None, "") else str(value)


def _rule_text(rule: Mapping[str, Any]) -> str:
    op = "=" if rule.get("compareCaseSensitive", True) not in (False, "False", "false") else "~="
    return f"{rule.get('certificateField', '?')}.{rule.get('certificateSubField', '?')}{op}{rule.get('matchCriteria', '')}"


def evaluate(
    report: Mapping[str, Any],
    now: dt.datetime,
    desired: Mapping[str, Any] | None = None,
    expect_thumbprint: str | None = None,
    warn_days: int = 30,
) -> list[Check]:
    """Judge one report: the script's own status plus what mTLS needs, item by item."""
    checks: list[Check] = []
    status = str(report.get("status") or "unknown")
    drift = [str(d) for d in as_list(report.get("drift"))]
    changes = [str(c) for c in as_list(report.get("changes"))]
    if status in ("compliant", "converged"):
        checks.append(Check("run", "ok", status + (f" ({len(changes)} change(s) made)" if changes else ""), changes))
    elif status == "drift":
        checks.append(Check("run", "fail", f"drift: {len(drift)} difference(s) from the desired state", drift))
    elif status == "failed":
        checks.append(Check("run", "fail", f"failed: {report.get('error') or 'no error message'}", drift))
    elif status == "reboot-pending":
        checks.append(_reboot_check(report, now, changes or drift))
    else:
        checks.append(Check("run", "fail", f"unknown status {status!r}", drift))
    steps = [s for s in as_list(report.get("steps")) if isinstance(s, dict)]
    checks[-1].items = list(checks[-1].items) + [f"step {s.get('name', '?')} {s.get('status', '?')}: {s.get('error') or ''}".rstrip(": ")
                         for s in steps if s.get("status") in ("failed", "skipped")]

    c = _dict(report.get("checks"))
    binding = _dict(c.get("binding"))
    thumb = str(binding.get("thumbprint") or "").upper() or None
    not_after = parse_time(binding.get("notAfter"))
    if not thumb:
        checks.append(Check("binding", "fail", "no server certificate thumbprint reported"))
    else:
        subject = binding.get("subject") or "?"
        text = f"{binding.get('bindingInformation') or '*:443:'} {subject} {short(thumb)}"
        result = "ok"
        if not_after is None:
            text += " notAfter unknown"
            result = "warn"
        else:
            left = days_left(not_after, now)
            text += f" until {not_after.date().isoformat()} ({left:.0f} days)"
            if left < 0:
                result = "fail"
            elif left < warn_days:
                result = "warn"
        items = []
        if expect_thumbprint and thumb != expect_thumbprint.upper():
            result = "fail"
            items.append(f"bound {thumb}, expected {expect_thumbprint.upper()}")
        checks.append(Check("binding", result, text, items))

    # Judged by the enforcement the beacon is meant to have: observe negotiates certificates
    # without requiring them and keeps anonymous on; require needs both closed.
    mode = str((desired or {}).get("enforcement") or report.get("enforcement") or "require")
    if mode not in SSL_FLAGS_BY_MODE:
        checks.append(Check("enforcement", "fail", f"unknown enforcement {mode!r}; expected observe or require"))
        mode = "require"
    else:
        checks.append(Check("enforcement", "ok", mode + (": certificates negotiated and mapped, not required (anonymous on)" if mode == "observe" else "")))
    wanted_flags = set(SSL_FLAGS_BY_MODE[mode])
    if desired and isinstance(desired.get("access"), dict) and desired["access"].get("sslFlags"):
        wanted_flags = _flags(desired["access"]["sslFlags"])
    flags = binding.get("sslFlags")
    if flags is None:
        checks.append(Check("sslFlags", "fail", "not reported"))
    else:
        missing, extra = sorted(wanted_flags - _flags(flags)), sorted(_flags(flags) - wanted_flags)
        what = [f"missing {', '.join(missing)}"] if missing else []
        what += [f"{', '.join(extra)} set, not wanted in {mode}"] if extra else []
        checks.append(Check("sslFlags", "fail" if what else "ok", f"{flags or '(none)'}" + (": " + "; ".join(what) if what else "")))

    anonymous_wanted = ANONYMOUS_BY_MODE[mode]
    anonymous = c.get("anonymousEnabled")
    if anonymous is None:
        checks.append(Check("anonymous", "fail", "not reported"))
    else:
        on = anonymous in (True, "True", "true")
        if on == anonymous_wanted:
            checks.append(Check("anonymous", "ok", "on (observe)" if on else "off"))
        elif on:
            checks.append(Check("anonymous", "fail", "ON: devices without a mapped certificate get in"))
        else:
            checks.append(Check("anonymous", "fail", "off in observe: devices without a certificate get 401 (observe must not lock anyone out)"))

    locations = [loc for loc in as_list(c.get("locations")) if isinstance(loc, dict)]
    if locations:  # issue 12 reports: every lock-down location, not only the site
        wrong = []
        for loc in locations:
            where = loc.get("location", "?")
            if loc.get("anonymousEnabled") is not None and (loc.get("anonymousEnabled") in (True, "True", "true")) != anonymous_wanted:
                wrong.append(f"{where}: anonymous {'ON' if not anonymous_wanted else 'off'}")
            if loc.get("certificateMappingEnabled") in (False, "False", "false"):
                wrong.append(f"{where}: certificate mapping authentication off")
            if loc.get("sslFlags") is not None and _flags(loc.get("sslFlags")) != wanted_flags:
                wrong.append(f"{where}: sslFlags {loc.get('sslFlags') or '(none)'}")
        checks.append(Check("locations", "fail" if wrong else "ok", f"{len(locations)} location(s)" + (": " + "; ".join(wrong) if wrong else f" as {mode} wants"), wrong))

    mappings = [m for m in as_list(c.get("mappings")) if isinstance(m, dict)]
    lines = []
    allow = 0
    for m in mappings:
        rules = " AND ".join(_rule_text(r) for r in as_list(m.get("rules")) if isinstance(r, dict)) or "(no rules)"
        enabled = m.get("enabled") in (True, "True", "true")
        mode = m.get("permissionMode", "?")
        if enabled and mode == "Allow" and as_list(m.get("rules")):
            allow += 1
        lines.append(f"{mode} {m.get('name', '?')!r}{'' if enabled else ' (disabled)'}: {rules}")
    result = "ok" if allow else "fail"
    detail = f"{allow} enabled Allow mapping(s)" if allow else "no enabled Allow mapping with rules: every device gets 401.2"
    if desired:
        wanted_names = {
            m.get("name")
            for m in as_list(((desired.get("authentication") or {}).get("clientCertificateMapping") or {}).get("manyToOneMappings"))
            if isinstance(m, dict)
        }
        have_names = {m.get("name") for m in mappings}
        if wanted_names and wanted_names != have_names:
            result = "fail"
            detail += f"; desired {sorted(n for n in wanted_names if n)}, present {sorted(n for n in have_names if n)}"
    checks.append(Check("mappings", result, detail, lines))

    http = c.get("httpSys")
    if not isinstance(http, dict):
        checks.append(Check("HTTP.sys", "fail", "no HTTP.sys binding (netsh http show sslcert found none)"))
    else:
        wanted = wanted_httpsys(desired, expect_thumbprint or thumb)
        differences = httpsys_differences(http, wanted)
        shown = ["clientcertnegotiation", "verifyclientcertrevocation", "usagecheck", "sslctlstorename", "urlretrievaltimeout"]
        summary = f"{http.get('ipport', '?')} certhash {short(http.get('certhash'))} " + " ".join(f"{k}={_shown(http.get(k))}" for k in shown if k in http)
        checks.append(Check("HTTP.sys", "fail" if differences else "ok", summary, differences))

    stores = _dict(c.get("trustStores"))
    entries = [e for e in as_list(stores.get("certificates")) if isinstance(e, dict)]
    absent = [e for e in entries if e.get("present") not in (True, "True", "true")]
    not_roots = [e for e in as_list(stores.get("nonSelfSignedInRoot")) if isinstance(e, dict)]
    mode = stores.get("clientAuthTrustMode")
    wanted_mode = ((desired or {}).get("schannel") or {}).get("clientAuthTrustMode", 2) if desired else 2
    items = [f"{e.get('store')}: {e.get('subject', '?')} {short(e.get('thumbprint'))} {'present' if e not in absent else 'MISSING'}" for e in entries]
    items += [f"Root holds non-self-signed {e.get('subject', '?')} {short(e.get('thumbprint'))} (403.16)" for e in not_roots]
    problems = []
    if absent:
        problems.append(f"{len(absent)} CA certificate(s) missing")
    if not_roots:
        problems.append(f"{len(not_roots)} non-self-signed certificate(s) in Root")
    try:
        mode_ok = mode is not None and int(mode) == int(wanted_mode)
    except (TypeError, ValueError):
        mode_ok = False
    if not mode_ok:
        problems.append(f"ClientAuthTrustMode {mode if mode is not None else '(unset)'}, desired {wanted_mode}")
    checks.append(Check("trust", "fail" if problems else "ok", "; ".join(problems) or f"{len(entries)} CA entries present, ClientAuthTrustMode {mode}", items))

    crl = [e for e in as_list(c.get("crl")) if isinstance(e, dict)]
    down = [e for e in crl if e.get("reachable") not in (True, "True", "true")]
    items = [f"{e.get('url')}: " + (f"HTTP {e.get('status')}" if e not in down else " ".join(str(p) for p in ("UNREACHABLE", e.get("status"), e.get("error")) if p)) for e in crl]
    if not crl:
        checks.append(Check("CRL", "warn", "no CRL URL checked from the beacon", items))
    elif down:
        checks.append(Check("CRL", "fail", f"{len(down)} of {len(crl)} URL(s) unreachable from the beacon: devices get 403.13", items))
    else:
        checks.append(Check("CRL", "ok", f"{len(crl)} URL(s) reachable from the beacon", items))

    warnings = [str(w) for w in as_list(report.get("warnings"))]
    if report.get("rebootRequired") in (True, "True", "true"):
        warnings.append("a reboot is required (SCHANNEL or feature change)")
    if warnings:
        checks.append(Check("warnings", "warn", f"{len(warnings)} warning(s)", warnings))
    return checks


def _reboot_check(report: Mapping[str, Any], now: dt.datetime, changes: list[str]) -> Check:
    reboot = _dict(_dict(report.get("checks")).get("reboot"))
    reasons = [str(r) for r in as_list(reboot.get("reasons"))]
    requested = parse_time(reboot.get("requestedAt"))
    detail = f"a restart is pending since {reboot.get('recordedAt') or '?'}"
    if requested is None:
        return Check("run", "warn", detail + " (the next converge run asks SSM for it: exit 3010)", reasons + changes)
    if now - requested > REBOOT_OVERDUE:
        return Check("run", "fail", detail + f"; asked for at {reboot.get('requestedAt')} and not done: restart the instance", reasons + changes)
    return Check("run", "warn", detail + f"; asked for at {reboot.get('requestedAt')} (SSM Agent restarts the instance and runs the step again)", reasons + changes)


def verdict(checks: Iterable[Check]) -> str:
    checks = list(checks)
    if any(c.result == "fail" for c in checks):
        return "fail"
    if any(c.result == "warn" for c in checks):
        return "warn"
    return "ok"


def render_beacon(title: str, checks: Sequence[Check]) -> list[str]:
    lines = [title]
    rows = []
    for check in checks:
        rows.append((check.name, check.result.upper() if check.result != "ok" else "ok", check.detail))
        for item in check.items:
            rows.append(("", "", f"  - {item}"))
    lines += table(("CHECK", "RESULT", "DETAIL"), rows, indent="  ")
    return lines
