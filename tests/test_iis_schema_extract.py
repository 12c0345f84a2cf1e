"""tests/iis_schema: the IIS 10.0 schema extract and its loader, proven on facts of the real schema
that a wrong path, a wrong nesting of collections or a wrong parse would get wrong; and extract.py,
on a small synthetic schema (the full Microsoft file is not in the repository).

Set IIS_SCHEMA_SOURCE to the full IIS_schema.xml (see the extract's header) to also check that the
committed extract is exactly what extract.py makes of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import iis_schema as schema
from iis_schema import extract

SITES = "system.applicationHost/sites"
ACCESS = "system.webServer/security/access"
ANONYMOUS = "system.webServer/security/authentication/anonymousAuthentication"
MAPPING = "system.webServer/security/authentication/iisClientCertificateMappingAuthentication"
RUNTIME = "system.webServer/serverRuntime"
FILTERING = "system.webServer/security/requestFiltering"
STATIC = "system.webServer/staticContent"
AUTHORIZATION = "system.webServer/security/authorization"


def test_extract_holds_exactly_the_wanted_sections_and_names_its_source() -> None:
    assert sorted(schema.section_names()) == sorted(extract.SECTIONS)
    head = schema.SCHEMA_PATH.read_text(encoding="utf-8").split("-->", 1)[0]
    source = extract.SOURCE
    for fact in (source.repo, source.path, source.commit, source.blob, source.retrieved, "unmodified extract"):
        assert fact in head


def test_committed_extract_is_in_the_form_extract_py_writes() -> None:
    # Re-extracting the extract gives it back byte for byte: no hand edit outside the sections.
    text = schema.SCHEMA_PATH.read_bytes().decode("utf-8")
    assert extract.build_extract(text, extract.SECTIONS, extract.SOURCE) == text


@pytest.mark.skipif(not os.environ.get("IIS_SCHEMA_SOURCE"), reason="IIS_SCHEMA_SOURCE names the full IIS_schema.xml")
def test_committed_extract_is_what_extract_py_makes_of_the_source() -> None:
    assert extract.main([os.environ["IIS_SCHEMA_SOURCE"], "--check"]) == 0


def test_access_ssl_flags_are_flags_with_their_numbers() -> None:
    info = schema.attribute(ACCESS, "", "sslFlags")
    assert info["type"] == "flags" and info["flags"] and info["defaultValue"] == "None"
    assert info["enum"] == {"None": 0, "Ssl": 8, "SslNegotiateCert": 32, "SslRequireCert": 64, "Ssl128": 256}
    assert schema.flags_value(ACCESS, "", "sslFlags", "Ssl,SslNegotiateCert,SslRequireCert") == 104
    assert schema.flags_value(ACCESS, "", "sslFlags", "Ssl, SslNegotiateCert") == 40
    with pytest.raises(KeyError, match="'SslRequire'"):
        schema.flags_value(ACCESS, "", "sslFlags", "Ssl,SslRequire")
    with pytest.raises(KeyError, match="'ssl'"):  # names are matched as the schema spells them
        schema.flags_value(ACCESS, "", "sslFlags", "ssl")
    with pytest.raises(ValueError):
        schema.flags_value(ACCESS, "", "sslFlags", "Ssl,,SslNegotiateCert")


def test_many_to_one_mappings_nest_rules_inside_the_add_element() -> None:
    assert schema.attribute(MAPPING, "", "enabled")["defaultValue"] == "false"
    assert schema.attribute(MAPPING, "", "manyToOneCertificateMappingsEnabled")["type"] == "bool"
    add = "manyToOneMappings/add"
    name = schema.attribute(MAPPING, add, "name")
    assert name["isUniqueKey"] and name["required"]
    assert schema.unique_keys(MAPPING, add) == schema.unique_keys(MAPPING, "manyToOneMappings") == ["name"]
    password = schema.attribute(MAPPING, add, "password")
    assert password["encrypted"] and password["caseSensitive"] and not password["required"]
    mode = schema.attribute(MAPPING, add, "permissionMode")
    assert mode["type"] == "enum" and mode["enum"] == {"Allow": 1, "Deny": 2} and mode["defaultValue"] == "Allow"
    rules = "manyToOneMappings/add/rules/add"
    assert schema.attribute(MAPPING, rules, "certificateField")["enum"] == {"Subject": 1, "Issuer": 2}
    assert schema.enum_value(MAPPING, rules, "certificateField", "Issuer") == 2
    # Rules have no unique key: the four attributes together identify a rule.
    assert schema.unique_keys(MAPPING, rules) == []
    assert schema.combined_keys(MAPPING, rules) == ["certificateField", "certificateSubField", "matchCriteria", "compareCaseSensitive"]
    assert schema.attribute(MAPPING, rules, "compareCaseSensitive")["defaultValue"] == "true"
    assert schema.unique_keys(MAPPING, "oneToOneMappings/add") == ["certificate"]
    assert schema.attribute(MAPPING, "oneToOneMappings/add", "password")["encrypted"]
    with pytest.raises(KeyError, match="'rules'"):  # rules live under the add element, not beside it
        schema.element(MAPPING, "manyToOneMappings/rules")


def test_server_runtime_authenticated_user_override() -> None:
    info = schema.attribute(RUNTIME, "", "authenticatedUserOverride")
    assert info["enum"] == {"UseAuthenticatedUser": 1, "UseWorkerProcessUser": 2}
    assert info["defaultValue"] == "UseAuthenticatedUser"
    assert schema.enum_value(RUNTIME, "", "authenticatedUserOverride", "UseWorkerProcessUser") == 2


def test_site_defaults_log_file_and_custom_fields() -> None:
    log = "siteDefaults/logFile"
    assert schema.attribute(SITES, log, "logFormat")["enum"] == {"IIS": 0, "NCSA": 1, "W3C": 2, "Custom": 3}
    fields = schema.attribute(SITES, log, "logExtFileFlags")
    assert fields["flags"] and fields["enum"]["SiteName"] == 16 and fields["enum"]["HttpSubStatus"] == 2097152
    source_type = schema.attribute(SITES, f"{log}/customFields/add", "sourceType")
    assert source_type["required"] and source_type["enum"] == {"RequestHeader": 0, "ResponseHeader": 1, "ServerVariable": 2}
    assert schema.unique_keys(SITES, f"{log}/customFields") == ["logFieldName"]
    # A site's own logFile has the same shape; the sites collection's add element is "site".
    assert schema.unique_keys(SITES, "site/logFile/customFields/add") == ["logFieldName"]
    assert schema.unique_keys(SITES, "site") == schema.unique_keys(SITES) == ["name", "id"]
    assert schema.combined_keys(SITES, "site/bindings") == ["protocol", "bindingInformation"]
    assert schema.attribute(SITES, "site/bindings/binding", "sslFlags")["type"] == "uint"  # not flags


def test_request_filtering_static_content_authorization_anonymous() -> None:
    assert schema.unique_keys(FILTERING, "fileExtensions/add") == ["fileExtension"]
    assert schema.attribute(FILTERING, "fileExtensions/add", "allowed")["required"]
    assert schema.unique_keys(STATIC, "mimeMap") == schema.unique_keys(STATIC) == ["fileExtension"]
    access_type = schema.attribute(AUTHORIZATION, "add", "accessType")
    assert access_type["enum"] == {"Allow": 0, "Deny": 1}  # not permissionMode's 1 and 2
    assert schema.combined_keys(AUTHORIZATION) == ["users", "roles", "verbs"]
    assert schema.attribute(ANONYMOUS, "", "userName")["defaultValue"] == "IUSR"
    assert schema.attribute(ANONYMOUS, "", "password")["encrypted"]


def test_missing_names_raise_key_errors_that_name_them() -> None:
    with pytest.raises(KeyError, match="sslFlagz") as caught:
        schema.attribute(ACCESS, "", "sslFlagz")
    assert "sslFlags" in str(caught.value)  # and lists what is there
    with pytest.raises(KeyError, match="passwrd"):
        schema.attribute(MAPPING, "manyToOneMappings/add", "passwrd")
    with pytest.raises(KeyError, match="system.webServer/httpErrors"):
        schema.section("system.webServer/httpErrors")
    with pytest.raises(KeyError, match="'Both'"):
        schema.enum_value(MAPPING, "manyToOneMappings/add/rules/add", "certificateField", "Both")
    with pytest.raises(KeyError, match="holds 0 collections"):
        schema.unique_keys(ACCESS)
    with pytest.raises(TypeError):
        schema.enum_value(ANONYMOUS, "", "enabled", "true")


SYNTHETIC = """<!-- header that is not copied -->
<configSchema>
  <sectionSchema name="b/second">
    <attribute name="x" type="bool" />
  </sectionSchema>

  <sectionSchema name="a/first">
    <!-- kept as written -->
    <collection addElement="add"><attribute name='k'   type="string" isUniqueKey="true"/></collection>
  </sectionSchema>
  <sectionSchema name="c/left-out" />
</configSchema>
"""
PROVENANCE = extract.Provenance("owner/repo", "IIS_schema.xml", "0" * 40, "1" * 40, "2000-01-02", "a test")


def test_extract_is_deterministic_and_copies_sections_verbatim() -> None:
    first = extract.build_extract(SYNTHETIC, ["a/first", "b/second"], PROVENANCE)
    assert first == extract.build_extract(SYNTHETIC, ["b/second", "a/first"], PROVENANCE)
    body = first.split("-->", 1)[1]
    texts = extract.section_texts(SYNTHETIC)
    assert body == f"\n\n<configSchema>\n\n{texts['b/second']}\n\n{texts['a/first']}\n\n</configSchema>\n"
    assert "<attribute name='k'   type=\"string\" isUniqueKey=\"true\"/>" in body and "<!-- kept as written -->" in body
    assert "left-out" not in body and "not copied" not in first
    assert extract.build_extract(first, ["a/first", "b/second"], PROVENANCE) == first
    with pytest.raises(extract.ExtractError, match="missing/one"):
        extract.build_extract(SYNTHETIC, ["missing/one"], PROVENANCE)


def test_extract_main_refuses_another_file(tmp_path: Path) -> None:
    source = tmp_path / "IIS_schema.xml"
    source.write_text(SYNTHETIC, encoding="utf-8")
    output = tmp_path / "out.xml"
    assert extract.main([str(source), "--output", str(output)]) == 2
    assert not output.exists()
    assert extract.git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob
