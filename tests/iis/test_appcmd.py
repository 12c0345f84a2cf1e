"""appcmd.txt, the manual equivalent of the converge run: commands that are valid, in a safe order."""

from __future__ import annotations

import re

import pytest

from components.iis.appcmd import render
from components.stack import prepare
from conftest import stack_raw


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
                     for l in lines if "-section:system.webServer/security/access" in l}:
        own = [l for l in lines if f'set config "{location}" -section:' in l and "Mappings." not in l and "requestFiltering" not in l and "serverRuntime" not in l]
        kinds = [re.search(r"-section:(\S+)", l).group(1).rsplit("/", 1)[-1] for l in own]
        assert kinds == ["iisClientCertificateMappingAuthentication", "anonymousAuthentication", "access"], (location, kinds)
