"""Every IIS section, attribute, collection element and enum value the converge script writes exists
in IIS 10's configuration schema (tests/iis_schema: an unmodified extract of IIS_schema.xml).

Names are read from the script itself (the literals it passes to Microsoft.Web.Administration and
WebAdministration) and from real desired states (components/iis/state.py), so a misspelt attribute
or an enum value IIS does not know fails here; the mutation tests prove the checker can fail. The
table below says only where in the schema each function writes: that is the script's design.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

import iis_schema
from conftest import ROOT

CONVERGE = ROOT / "components" / "iis" / "windows" / "Set-BeaconMtls.ps1"
CERT_MAP = "system.webServer/security/authentication/iisClientCertificateMappingAuthentication"
SITES = "system.applicationHost/sites"
STATIC = "system.webServer/staticContent"
FILTERING = "system.webServer/security/requestFiltering"

# function -> the schema elements its attribute literals belong to (each literal must exist in one).
ATTRIBUTE_HOMES: dict[str, list[tuple[str, str]]] = {
    "Get-HeldPassword": [(CERT_MAP, "manyToOneMappings/add"), (CERT_MAP, "oneToOneMappings/add")],
    "Read-ManyToOne": [(CERT_MAP, "manyToOneMappings/add"), (CERT_MAP, "manyToOneMappings/add/rules/add")],
    "Sync-OneToOne": [(CERT_MAP, "oneToOneMappings/add")],
    "Sync-LogFile": [(SITES, "siteDefaults/logFile"), (SITES, "site/logFile"), (SITES, "siteDefaults/logFile/customFields/add")],
    "Sync-Logging": [(SITES, "site"), (SITES, "siteDefaults/logFile"), (SITES, "siteDefaults/logFile/customFields/add")],
    "Sync-MimeMaps": [(STATIC, "mimeMap")],
    "Sync-RequestFiltering": [(FILTERING, "fileExtensions/add")],
    "Test-ExtensionAllowed": [(FILTERING, "fileExtensions/add"), (FILTERING, "fileExtensions")],
}
# Set-ManyToOne writes two attribute lists: the mapping's, then each rule's.
MANY_TO_ONE_LISTS = [(CERT_MAP, "manyToOneMappings/add"), (CERT_MAP, "manyToOneMappings/add/rules/add")]
# Collections the script opens by name, and the add element it creates in each.
COLLECTIONS = {
    "manyToOneMappings": (CERT_MAP, "manyToOneMappings", "add"),
    "oneToOneMappings": (CERT_MAP, "oneToOneMappings", "add"),
    "rules": (CERT_MAP, "manyToOneMappings/add/rules", "add"),
    "customFields": (SITES, "siteDefaults/logFile/customFields", "add"),
    "fileExtensions": (FILTERING, "fileExtensions", "add"),
}
# Where each enum table of the script ($iisEnums) lives in the schema.
ENUM_HOMES = {
    "permissionMode": (CERT_MAP, "manyToOneMappings/add"),
    "certificateField": (CERT_MAP, "manyToOneMappings/add/rules/add"),
    "authenticatedUserOverride": ("system.webServer/serverRuntime", ""),
    "sslFlags": ("system.webServer/security/access", ""),
    "logFormat": (SITES, "siteDefaults/logFile"),
    "logExtFileFlags": (SITES, "siteDefaults/logFile"),
    "sourceType": (SITES, "siteDefaults/logFile/customFields/add"),
}


def _function(text: str, name: str) -> str:
    start = text.index(f"function {name} {{")
    return text[start: text.index("\n}\n", start)]


def _exists(section: str, path: str, name: str) -> bool:
    try:
        iis_schema.attribute(section, path, name)
        return True
    except KeyError:
        return False


def script_enums(text: str) -> dict[str, dict[str, int]]:
    block = text[text.index("$iisEnums = @{"):]
    block = block[: block.index("\n}\n")]
    return {name: {k: int(v) for k, v in re.findall(r"(\w+) = (\d+)", body)}
            for name, body in re.findall(r"^    (\w+) = @\{ (.*) \}$", block, re.M)}


def script_problems(text: str) -> list[str]:
    problems: list[str] = []
    filters = dict(re.findall(r"^\$(\w+Filter) = '([^']+)'$", text, re.M))
    for name, homes in ATTRIBUTE_HOMES.items():
        body = _function(text, name)
        literals = set(re.findall(r"\.(?:Get|Set)AttributeValue\('(\w+)'|\.GetAttribute\('(\w+)'\)", body))
        for attribute in {a or b for a, b in literals}:
            if not any(_exists(s, p, attribute) for s, p in homes):
                problems.append(f"{name} uses attribute '{attribute}', which none of {homes} has")
    lists = re.findall(r"foreach \(\$name in @\(([^)]*)\)\) \{ \$\w+\.SetAttributeValue\(\$name", _function(text, "Set-ManyToOne"))
    if len(lists) != 2:
        problems.append(f"Set-ManyToOne: expected the mapping's and the rule's attribute lists, found {len(lists)}")
    for names, (section, path) in zip(lists, MANY_TO_ONE_LISTS):
        for attribute in re.findall(r"'(\w+)'", names):
            if not _exists(section, path, attribute):
                problems.append(f"Set-ManyToOne writes '{attribute}', which {section} {path} does not have")
    for attribute in re.findall(r"SetAttributeValue\('(\w+)'", _function(text, "Set-ManyToOne")):
        if not _exists(*MANY_TO_ONE_LISTS[0], attribute):
            problems.append(f"Set-ManyToOne writes '{attribute}' on a mapping, which has none")
    for collection, (section, path, add) in COLLECTIONS.items():
        if f"GetCollection('{collection}')" in text and iis_schema.collection(section, path).get("addElement") != add:
            problems.append(f"collection {collection} adds <{add}>, the schema says <{iis_schema.collection(section, path).get('addElement')}>")
    for collection in set(re.findall(r"GetCollection\('(\w+)'\)", text)) - set(COLLECTIONS):
        problems.append(f"GetCollection('{collection}') is not a collection this test knows")
    mime = _function(text, "Sync-MimeMaps")
    for created in re.findall(r"CreateElement\('(\w+)'\)", mime):
        if created != iis_schema.collection(STATIC, "").get("addElement"):
            problems.append(f"Sync-MimeMaps creates <{created}>, staticContent adds <{iis_schema.collection(STATIC, '').get('addElement')}>")
    for child in re.findall(r"GetChildElement\('(\w+)'\)", text):
        if child not in ("siteDefaults", "logFile", "fileExtensions"):
            problems.append(f"GetChildElement('{child}') is not an element this test knows")
    iis_schema.element(SITES, "siteDefaults/logFile")  # both exist (raises otherwise)
    iis_schema.element(FILTERING, "fileExtensions")
    for variable, name in re.findall(r"filter = \$(\w+); name = '(\w+)'", _function(text, "Get-LockdownSetting")):
        section = filters.get(variable)
        if section is None or not _exists(section, "", name):
            problems.append(f"Get-LockdownSetting writes {variable} ({section}) @{name}, which the schema does not have")
    for name, values in script_enums(text).items():
        home = ENUM_HOMES.get(name)
        if home is None:
            problems.append(f"$iisEnums.{name} has no home in this test")
            continue
        schema_values = iis_schema.attribute(*home, name)["enum"]
        if values != schema_values:
            problems.append(f"$iisEnums.{name} is {values}; IIS_schema.xml says {schema_values}")
    return problems


def state_problems(state: dict[str, Any]) -> list[str]:
    problems: list[str] = []

    def check(what: str, call) -> None:
        try:
            call()
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(f"{what}: {exc}")

    check("access.sslFlags", lambda: iis_schema.flags_value("system.webServer/security/access", "", "sslFlags", state["access"]["sslFlags"]))
    check("serverRuntime.authenticatedUserOverride", lambda: iis_schema.enum_value(
        "system.webServer/serverRuntime", "", "authenticatedUserOverride", state["serverRuntime"]["authenticatedUserOverride"]))
    mapping = state["authentication"]["clientCertificateMapping"]
    for m in mapping["manyToOneMappings"]:
        check(f"mapping {m['name']} permissionMode", lambda m=m: iis_schema.enum_value(CERT_MAP, "manyToOneMappings/add", "permissionMode", m["permissionMode"]))
        for rule in m["rules"]:
            check(f"mapping {m['name']} certificateField", lambda rule=rule: iis_schema.enum_value(
                CERT_MAP, "manyToOneMappings/add/rules/add", "certificateField", rule["certificateField"]))
    check("logging.fields", lambda: iis_schema.flags_value(SITES, "siteDefaults/logFile", "logExtFileFlags", ",".join(state["logging"]["fields"])))
    for field in state["logging"]["customFields"]:
        check(f"custom field {field['logFieldName']}", lambda field=field: iis_schema.enum_value(
            SITES, "siteDefaults/logFile/customFields/add", "sourceType", field["sourceType"]))
    names = [m["name"].casefold() for m in mapping["manyToOneMappings"]]
    if iis_schema.unique_keys(CERT_MAP, "manyToOneMappings") == ["name"] and len(set(names)) != len(names):
        problems.append(f"mapping names repeat (name is the collection's unique key): {names}")
    for key, values in (("fileExtension", [m["fileExtension"] for m in state["staticContent"]["mimeMaps"]]),):
        if iis_schema.unique_keys(STATIC, "") == [key] and len(set(values)) != len(values):
            problems.append(f"MIME maps repeat {key}: {values}")
    return problems


@pytest.fixture(scope="module")
def converge() -> str:
    return CONVERGE.read_text(encoding="utf-8")


def test_every_name_the_script_writes_is_in_iis_10s_schema(converge: str) -> None:
    assert script_problems(converge) == []


def test_the_scripts_enum_tables_are_the_schemas(converge: str) -> None:
    enums = script_enums(converge)
    assert set(enums) == set(ENUM_HOMES)
    # The value the old script assumed (0/1) would have read UseWorkerProcessUser as UseAuthenticatedUser.
    assert enums["authenticatedUserOverride"] == {"UseAuthenticatedUser": 1, "UseWorkerProcessUser": 2}


@pytest.mark.parametrize("golden", sorted((ROOT / "tests" / "golden").glob("iis-state-*.json")), ids=lambda p: p.name)
def test_desired_states_use_only_values_iis_knows(golden) -> None:
    assert state_problems(json.loads(golden.read_text())) == []


def test_an_observe_state_uses_only_values_iis_knows() -> None:
    from components.iis.state import SSL_FLAGS_OBSERVE

    state = json.loads((ROOT / "tests" / "golden" / "iis-state-dev.json").read_text())
    state["access"]["sslFlags"] = SSL_FLAGS_OBSERVE
    assert state_problems(state) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("@('name', 'description', 'enabled', 'permissionMode', 'userName')", "@('name', 'description', 'enabled', 'permisionMode', 'userName')", "permisionMode"),
        ("@('certificateField', 'certificateSubField', 'matchCriteria',", "@('certificateField', 'certificateSubfield', 'matchCriteria',", "certificateSubfield"),
        ("UseAuthenticatedUser = 1; UseWorkerProcessUser = 2", "UseAuthenticatedUser = 0; UseWorkerProcessUser = 1", "authenticatedUserOverride"),
        ("SslRequireCert = 64", "SslRequireCert = 128", "sslFlags"),
        ("$element = $ours.CreateElement('mimeMap')", "$element = $ours.CreateElement('add')", "creates <add>"),
        ("$item.SetAttributeValue('userName', $UserName)", "$item.SetAttributeValue('user', $UserName)", "'user'"),
        ("name = 'manyToOneCertificateMappingsEnabled'", "name = 'manyToOneMappingsEnabled'", "manyToOneMappingsEnabled"),
        ("$new.SetAttributeValue('sourceType', $field.sourceType)", "$new.SetAttributeValue('source', $field.sourceType)", "'source'"),
        ("$added.SetAttributeValue('allowed', $true)", "$added.SetAttributeValue('allow', $true)", "'allow'"),
    ],
)
def test_a_name_iis_does_not_know_is_caught(converge: str, old: str, new: str, expected: str) -> None:
    assert old in converge, old
    problems = script_problems(converge.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["access"].update(sslFlags="Ssl,SslRequireCertificate"), "access.sslFlags"),
        (lambda s: s["serverRuntime"].update(authenticatedUserOverride="UseWorkerProcess"), "authenticatedUserOverride"),
        (lambda s: s["logging"]["fields"].append("ClientCertificate"), "logging.fields"),
        (lambda s: s["authentication"]["clientCertificateMapping"]["manyToOneMappings"][0].update(permissionMode="allow"), "permissionMode"),
        (lambda s: s["authentication"]["clientCertificateMapping"]["manyToOneMappings"].append(
            dict(s["authentication"]["clientCertificateMapping"]["manyToOneMappings"][0])), "mapping names repeat"),
    ],
)
def test_a_desired_value_iis_does_not_know_is_caught(change, expected: str) -> None:
    state = json.loads((ROOT / "tests" / "golden" / "iis-state-prod.json").read_text())
    change(state)
    assert any(expected in p for p in state_problems(state)), state_problems(state)
