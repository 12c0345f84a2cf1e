"""appcmd.txt, the manual equivalent of the converge run: commands that are valid, in a safe order."""

from __future__ import annotations

import copy
import re

import pytest

from components.iis.appcmd import render
from components.stack import prepare
from conftest import ROOT, stack_raw


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    out = {}
    for stack in ("dev", "prod"):
        raw, region = stack_raw(stack)
        out[stack] = render(prepare(raw, stack, region).iis_state)
    return out


def _commands(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("REM")]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_password_never_expires_is_set_with_a_command_that_has_it(texts: dict[str, str], stack: str) -> None:
    lines = _commands(texts[stack])
    (line,) = [line for line in lines if line.startswith("net user ")]  # both stacks map to a local account
    # net user knows /passwordchg and /expires (the account's expiry) but no password-never-expires switch.
    assert "/expires" not in line and "/passwordchg:no" in line
    following = lines[lines.index(line) + 1]
    assert re.fullmatch(r'powershell -NoProfile -Command "Set-LocalUser -Name \'[^\']+\' -PasswordNeverExpires \$true"', following)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_httpsys_record_is_updated_not_deleted(texts: dict[str, str], stack: str) -> None:
    lines = _commands(texts[stack])
    assert not any(line.startswith("netsh http delete sslcert") for line in lines)
    (update,) = [line for line in lines if line.startswith("netsh http ")]
    assert update.startswith("netsh http update sslcert ipport=0.0.0.0:443 ")
    for flag in ("certhash=", "appid=", "certstorename=", "verifyclientcertrevocation=", "clientcertnegotiation=enable"):
        assert flag in update


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_add_to_a_keyed_collection_is_preceded_by_its_remove(texts: dict[str, str], stack: str) -> None:
    """Adding an entry whose key exists fails (or duplicates): each /+ of a mapping or a file
    extension comes right after the /- of the same key."""
    lines = _commands(texts[stack])
    adds = [i for i, line in enumerate(lines) if re.search(r'/\+"(manyToOneMappings\.\[name=\'[^\']+\',|fileExtensions\.)', line)]
    assert adds
    for i in adds:
        key = re.search(r"(manyToOneMappings\.\[name='[^']+'|fileExtensions\.\[fileExtension='[^']+')", lines[i]).group(1)
        assert lines[i - 1].endswith(f'/-"{key}]" /commit:apphost'), lines[i]
    assert "clear config" not in texts[stack], "appcmd clear config takes a section, not a collection path"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_mappings_before_the_sections_that_require_them(texts: dict[str, str], stack: str) -> None:
    lines = _commands(texts[stack])
    first_mapping = next(i for i, line in enumerate(lines) if "manyToOneMappings.[" in line)
    first_section = next(i for i, line in enumerate(lines) if "-section:system.webServer/security/access" in line)
    assert first_mapping < first_section
    # Per location: mapping on, then anonymous off, then certificates required.
    for location in {re.search(r'set config "([^"]+)" -section:system.webServer/security/access', l).group(1)
                     for l in lines if "set config" in l and "-section:system.webServer/security/access" in l}:
        own = [l for l in lines if f'set config "{location}" -section:' in l and "Mappings." not in l
               and any(f"-section:{s} " in l for s in LOCKDOWN_SECTIONS)]
        kinds = [re.search(r"-section:(\S+)", l).group(1).rsplit("/", 1)[-1] for l in own]
        assert kinds == ["iisClientCertificateMappingAuthentication", "anonymousAuthentication", "access"], (location, kinds)


CONVERGE = ROOT / "components" / "iis" / "windows" / "Set-BeaconMtls.ps1"
# Converge steps with no appcmd/netsh/certutil line in appcmd.txt.
NO_MANUAL_EQUIVALENT = {"stateFolder", "reboot", "webAdministration", "rootStore", "crl", "beaconInstaller", "lockdownAfterInstaller", "beaconRegistration"}
# Words of a numbered REM heading -> the converge step its commands stand for.
HEADING_STEP = {
    "Role services": "features",
    "Lock-down": "lockdown",
    "Mapped account": "lockdown",
    "Mappings on": "lockdown",
    "Locked sections": "lockdown",
    "as the worker process": "lockdown",
    "Lock each of these sections": "lockdown",
    "Request filtering": "requestFiltering",
    "MIME maps": "mimeMaps",
    "W3C logging": "logging",
    "Server certificate": "serverCertificate",
    "Trust stores": "trustStores",
    "SChannel": "schannel",
    "https binding": "siteBinding",
    "HTTP.sys record": "httpSys",
}
_HEADING = re.compile(r"^REM (\d+)([a-z]?)\. (.*)$")
LOCKDOWN_SECTIONS = (
    "system.webServer/security/authentication/iisClientCertificateMappingAuthentication",
    "system.webServer/security/authentication/anonymousAuthentication",
    "system.webServer/security/access",
)
RUNTIME = "system.webServer/serverRuntime"


def _state(stack: str) -> dict:
    raw, region = stack_raw(stack)
    return prepare(raw, stack, region).iis_state


def _script_steps() -> list[str]:
    return re.findall(r"Start-Step -Name '(\w+)'", CONVERGE.read_text(encoding="utf-8"))


def _headings(text: str) -> list[tuple[int, str, str]]:
    return [(int(m.group(1)), m.group(2), m.group(3)) for m in map(_HEADING.match, text.splitlines()) if m]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_numbered_blocks_follow_the_converge_scripts_step_order(texts: dict[str, str], stack: str) -> None:
    headings = _headings(texts[stack])
    numbers = [n for n, letter, _ in headings if not letter]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    for n in numbers:  # sub-headings run a, b, c... under their step's number
        letters = [letter for m, letter, _ in headings if m == n and letter]
        assert letters == [chr(ord("a") + i) for i in range(len(letters))], (n, letters)
    # A step heading with sub-headings stands for what its sub-headings stand for.
    leaves = [(n, letter, title) for n, letter, title in headings if letter or not any(m == n and sub for m, sub, _ in headings)]
    steps: list[str] = []
    for n, letter, title in leaves:
        found = {step for words, step in HEADING_STEP.items() if words in title}
        assert len(found) == 1, (f"{n}{letter}", title, found)
        if not steps or steps[-1] != next(iter(found)):
            steps.append(next(iter(found)))
    script = _script_steps()
    assert NO_MANUAL_EQUIVALENT <= set(script), "a step named here is no longer in the script"
    assert steps == [step for step in script if step not in NO_MANUAL_EQUIVALENT]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_443_opens_last_after_every_lockdown_line(texts: dict[str, str], stack: str) -> None:
    lines = _commands(texts[stack])
    (binding,) = [i for i, line in enumerate(lines) if "/+bindings.[protocol='https'" in line]
    (record,) = [i for i, line in enumerate(lines) if line.startswith("netsh http ")]
    assert lines[binding + 1:] == [lines[record]], "the https binding and the HTTP.sys record are the last two commands"
    lockdown = [
        i for i, line in enumerate(lines)
        if "Mappings.[" in line or " lock config " in line or line.startswith("net user ")
        or any(f"-section:{s} " in line for s in (*LOCKDOWN_SECTIONS, RUNTIME))
    ]
    assert lockdown and max(lockdown) < binding


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_each_locked_setting_is_locked_after_it_is_set(texts: dict[str, str], stack: str) -> None:
    state = _state(stack)
    text = texts[stack]
    lines = _commands(text)
    wanted = [(loc, s) for loc in state["site"]["locations"] for s in LOCKDOWN_SECTIONS]
    wanted += [(loc, RUNTIME) for loc in state["serverRuntime"]["locations"]]
    locks = [line for line in lines if " lock config " in line]
    assert locks == [f'%windir%\\system32\\inetsrv\\appcmd.exe lock config "{loc}" -section:{s} /commit:apphost' for loc, s in wanted]
    last_set = max(i for i, line in enumerate(lines) if any(f'set config "{loc}" -section:{s} ' in line for loc, s in wanted))
    assert lines.index(locks[0]) > last_set
    assert "ONE IIS commit" in text and "appcmd cannot make that one atomic commit" in text


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_mime_maps_for_every_entry_between_request_filtering_and_logging(texts: dict[str, str], stack: str) -> None:
    state = _state(stack)
    raw_lines = texts[stack].splitlines()
    lines = _commands(texts[stack])
    maps = state["staticContent"]["mimeMaps"]
    assert maps
    site = state["site"]["name"]
    found = []
    for entry in maps:
        line = (
            f'%windir%\\system32\\inetsrv\\appcmd.exe set config "{site}" -section:staticContent '
            f"/+\"[fileExtension='{entry['fileExtension']}',mimeType='{entry['mimeType']}']\" /commit:apphost"
        )
        assert lines.count(line) == 1, line
        found.append(lines.index(line))
        # Its REM says the script adds it only where IIS does not serve the extension already.
        before = raw_lines[raw_lines.index(line) - 2]
        assert before.startswith(f"REM {entry['fileExtension']}: the script adds it only where IIS does not already serve"), before
    assert not any("-section:staticContent /-" in line for line in lines), "no remove before a MIME map is added"
    last_filtering = max(i for i, line in enumerate(lines) if "requestFiltering" in line)
    first_logging = min(i for i, line in enumerate(lines) if "system.applicationHost/sites" in line)
    assert last_filtering < min(found) and max(found) < first_logging


def test_hostile_site_and_mime_values_become_placeholders() -> None:
    state = copy.deepcopy(_state("dev"))
    hostile = 'Evil" & %PATH% Site'
    state["site"]["name"] = hostile
    state["site"]["locations"] = [hostile] + [f"{hostile}/{loc.split('/', 1)[1]}" for loc in state["site"]["locations"][1:]]
    state["serverRuntime"]["locations"] = [f"{hostile}/{loc.split('/', 1)[1]}" for loc in state["serverRuntime"]["locations"]]
    state["staticContent"]["mimeMaps"] = [*state["staticContent"]["mimeMaps"], {"fileExtension": ".x%TEMP%", "mimeType": 'text/"plain'}]
    text = render(state)
    assert "%PATH%" not in text and "%TEMP%" not in text and 'Evil"' not in text and 'text/"plain' not in text
    lines = _commands(text)
    mime = [line for line in lines if "-section:staticContent" in line]
    assert len(mime) == len(state["staticContent"]["mimeMaps"])
    assert all(line.split(" set config ", 1)[1].startswith('"<site name>" ') for line in mime)
    assert mime[-1].endswith("/+\"[fileExtension='<MIME map extension>',mimeType='<MIME type>']\" /commit:apphost")
    locks = [line for line in lines if " lock config " in line]
    assert locks and all(' lock config "<location path>" ' in line for line in locks)
    for what in ("site name", "location path", "MIME map extension", "MIME type"):
        assert f"REM NOTE: the {what} contains characters" in text
