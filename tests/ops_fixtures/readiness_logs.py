"""IIS W3C lines for the readiness tests: as IIS 10 writes them with the observe-mode custom fields
(crt-subject, crt-issuer, crt-serial, crt-flags), put into moto's CloudWatch Logs one event per
line as the CloudWatch agent ships them."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from tests.ops_fixtures.support import HERE, boto_client

GROUP = "/flexnet-beacon/dev/iis"
BEACON_1 = "i-7f0c2bfe3eaaa5b58"  # beacon-1 of outputs-dev.json
BEACON_2 = "i-313de044c3a981bf5"
FIELDS = ("date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status "
          "sc-substatus sc-win32-status time-taken crt-subject crt-issuer crt-serial crt-flags")
AGENT = "FlexNet+Inventory+Agent/2024+R1"
CA = "Example Devices CA"
_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})")


def recorded(name: str) -> list[str]:
    return (HERE / name).read_text(encoding="utf-8").splitlines()


def header(at: dt.datetime) -> list[str]:
    return ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0", f"#Date: {at:%Y-%m-%d %H:%M:%S}", f"#Fields: {FIELDS}"]


@dataclass(frozen=True)
class Cert:
    """A client certificate as IIS logs it (CERT_SUBJECT, CERT_ISSUER, CERT_SERIALNUMBER, CERT_FLAGS)."""

    cn: str
    serial: str = "1a-2b"
    o: str = "Example Corp"
    ou: str = ""
    issuer: str = CA
    flags: int = 1

    def fields(self) -> str:
        ou = f",+OU={self.ou.replace(' ', '+')}" if self.ou else ""
        subject = f"C=US,+O={self.o.replace(' ', '+')}{ou},+CN={self.cn}"
        return f"{subject} C=US,+O=Example+Corp,+CN={self.issuer.replace(' ', '+')} {self.serial} {self.flags}"


def line(at: dt.datetime, ip: str, uri: str = "/ManageSoftDL/", cert: Cert | None = None, status: str = "200 0", method: str = "GET") -> str:
    certificate = cert.fields() if cert else "- - - 0"
    return f"{at:%Y-%m-%d %H:%M:%S} 10.0.1.10 {method} {uri} - 443 - {ip} {AGENT} - {status} 0 15 {certificate}"


def shifted(lines: list[str], delta: dt.timedelta) -> list[tuple[int, str]]:
    """(timestamp ms, line) with the line's date/time (data lines, #Date:) moved by delta; a line
    without a time of its own (#Fields:, #Software:, junk) takes the time of the line before it
    (the #Date: of its header), the first ones that of the first line with a time."""
    out: list[tuple[int | None, str]] = []
    for text in lines:
        prefix = "#Date: " if text.startswith("#Date: ") else ""
        body = text[len(prefix):]
        m = _STAMP.match(body)
        if m:
            moment = dt.datetime.fromisoformat(f"{m[1]}T{m[2]}+00:00") + delta
            out.append((int(moment.timestamp() * 1000), f"{prefix}{moment:%Y-%m-%d %H:%M:%S}{body[m.end():]}"))
        else:
            out.append((None, text))
    known = [stamp for stamp, _ in out if stamp is not None]
    previous = known[0] if known else 0
    events = []
    for stamp, text in out:
        previous = stamp if stamp is not None else previous
        events.append((previous, text))
    return events


def put_lines(stream: str, events: list[tuple[int, str]], group: str = GROUP) -> None:
    logs = boto_client("logs")
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    batch = [{"timestamp": stamp, "message": text} for stamp, text in events]
    for start in range(0, len(batch), 5000):
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch[start:start + 5000])


def put_now(stream: str, lines: list[str], group: str = GROUP) -> None:
    """Lines with their own (recent) times, in time order as IIS writes them (a line without a
    time of its own stays after the line before it)."""
    put_lines(stream, sorted(shifted(lines, dt.timedelta(0)), key=lambda event: event[0]), group)
