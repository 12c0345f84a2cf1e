"""What the command line of `python -m scripts.pki` takes in, checked: argument types, subject
attributes, URLs, DNS names and IP addresses, times (--at, or now), the PFX password.

Every problem is a :class:`store.PkiError` (one line on stderr, exit 2).
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import os
import re
import unicodedata
import warnings
from urllib.parse import urlsplit

from scripts.cli_args import bounded

from .keycrypt import is_blank
from .store import PkiError

PROG = "python -m scripts.pki"
PASSWORD_ENV = "PKI_PASSWORD"
# A new PFX carries the private key, and the file can be guessed at offline without limit
# (PBKDF2 makes a guess cost about 10 ms of one CPU): 12 characters at least, unless
# --allow-short-password. Opening an existing PFX (scripts.ops) takes whatever it was made with.
MIN_PFX_PASSWORD = 12
DEFAULT_DAYS = {"ca": 3650, "intermediate": 1825, "server": 397, "client": 365, "crl": 7}

positive_days = bounded(int, 1, 36500, "a whole number of days")
MAX_COUNT = 100_000  # the most certificates one issue-client/sign-csr command issues (memory, and one index write)
non_negative_int = bounded(int, 0, 10**9, "a whole number")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def check_attr(value: str | None, what: str, limit: int = 64) -> str | None:
    """A subject attribute value: non-empty, no control characters, at most 64 characters."""
    if value is None:
        return None
    if not value.strip():
        raise PkiError(f"{what}: empty value")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise PkiError(f"{what} {value!r}: control characters are not allowed")
    if len(value) > limit:
        raise PkiError(f"{what} {value!r}: {len(value)} characters; at most {limit}")
    return value


def required_attr(value: str, what: str, limit: int = 64) -> str:
    """check_attr for a value that is always given (typed str, not str | None)."""
    checked = check_attr(value, what, limit)
    assert checked is not None
    return checked


def check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PkiError(f"{what}: got {url!r}; expected an http:// URL (https:// also works) with a host")
    if any(ch.isspace() for ch in url):
        raise PkiError(f"{what}: got {url!r}; a URL cannot contain whitespace")
    return url


_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_dns(name: str) -> str:
    host = name[2:] if name.startswith("*.") else name
    if not host or len(name) > 253 or not all(_DNS_LABEL.match(label) for label in host.split(".")):
        raise PkiError(f"--dns: got {name!r}; expected a DNS name like beacon.example.com (a leading '*.' is allowed)")
    return name.lower()


def check_domain(text: str, what: str = "--server-domain") -> str:
    """A DNS subtree for the server CA's name constraints: at least two labels (a whole top-level
    domain would constrain nothing), no wildcard, no leading or trailing dot, not an address."""
    name = text.strip().lower() if isinstance(text, str) else ""
    labels = name.split(".")
    problem = None
    if "*" in name:
        problem = "a wildcard is not a domain (the constraint covers every name below the domain anyway)"
    elif len(labels) < 2 or not all(_DNS_LABEL.match(label) for label in labels) or len(name) > 253:
        problem = "expected a DNS domain of at least two labels, like beacons.example.org"
    elif labels[-1].isdigit():
        problem = "an IP address is not a domain (the server CA excludes every address)"
    if problem:
        raise PkiError(f"{what}: got {text!r}; {problem}")
    return name


def within_domains(name: str, domains: list[str]) -> bool:
    """A DNS name (or a '*.' wildcard) inside one of the subtrees, as RFC 5280 4.2.1.10 matches a
    dNSName constraint: the domain itself, or the domain with labels added on the left."""
    name = name.lower().rstrip(".")
    return any(name == d or name.endswith("." + d) for d in domains)


def check_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise PkiError(f"--ip: got {text!r}; expected an IPv4 or IPv6 address") from None


def parse_at(text: str | None) -> dt.datetime:
    if text is None:
        return now_utc()
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PkiError(f"--at: got {text!r}; expected an ISO 8601 time like 2026-01-31T12:00:00Z") from None
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def read_password(confirm: bool = True, minimum: int = 0, allow_flag: str = "--allow-short-password") -> bytes:
    """PFX password from PKI_PASSWORD or a prompt on the terminal (asked twice when a new PFX
    is written). minimum: the fewest characters accepted (0: any non-empty one); allow_flag
    names the option that lifts it, for the message."""
    if PASSWORD_ENV in os.environ:
        password = os.environ[PASSWORD_ENV]
        if not password:
            raise PkiError(f"{PASSWORD_ENV} is set but empty; refusing an empty PFX password")
        source = PASSWORD_ENV
    else:
        try:
            with warnings.catch_warnings():
                # No terminal (cron, CI, a pipe without a tty): getpass would warn and read the
                # password from stdin, echoed. Refuse instead, in one line.
                warnings.simplefilter("error", getpass.GetPassWarning)
                first = getpass.getpass("PFX password: ")
                second = getpass.getpass("PFX password (again): ") if confirm else first
        except getpass.GetPassWarning:
            raise PkiError(f"no terminal to ask for the PFX password on: set {PASSWORD_ENV}") from None
        except (EOFError, KeyboardInterrupt):
            raise PkiError(f"no password entered (set {PASSWORD_ENV} or answer the prompt)") from None
        if not first:
            raise PkiError("empty password; a PFX must be protected by one")
        if first != second:
            raise PkiError("the two passwords differ")
        password, source = first, "the password"
    try:
        encoded = password.encode("utf-8")
    except UnicodeEncodeError:
        raise PkiError(f"{source}: not valid UTF-8 text (not shown); expected a UTF-8 password") from None
    if is_blank(password):
        raise PkiError(f"{source}: only whitespace ({len(password)} characters); expected a password: the PFX carries the private key")
    if len(password) < minimum:
        raise PkiError(
            f"{source}: {len(password)} characters; expected at least {minimum}: the PFX carries the private key and can be "
            f"attacked offline, guess after guess (pass {allow_flag} to export with a shorter one anyway)"
        )
    return encoded
