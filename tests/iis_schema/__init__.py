"""IIS 10.0's configuration schema, for tests: which sections, attributes, enum and flag values exist.

Reads IIS_schema.extract.xml (an unmodified extract of Microsoft's IIS_schema.xml made by
extract.py; its header names the source). Only the sections in extract.SECTIONS are there.

Paths:
- a section path is the sectionSchema name, e.g. "system.webServer/security/access";
- an element path is '/'-separated steps down from the section ("" is the section itself). A step
  names a child <element name="..."> or a collection's add element (its addElement: "add", "site",
  "binding", "mimeMap", ...). The schema keeps an add element's attributes and children on its
  <collection> node, so a collection step resolves to that node:
  "siteDefaults/logFile/customFields/add", "manyToOneMappings/add/rules/add", "mimeMap".

Lookups raise SchemaLookupError (a KeyError) naming what is missing and what is there. Names are
matched as the schema spells them (case-sensitive), so a test also catches a miscased name.
The returned Elements are shared (cached): read them, do not change them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import TypedDict

SCHEMA_PATH = Path(__file__).with_name("IIS_schema.extract.xml")


class SchemaLookupError(KeyError):
    """A section, element, attribute or enum/flag name the schema does not have."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class AttributeInfo(TypedDict):
    name: str
    type: str  # bool | enum | flags | uint | int | int64 | string | timeSpan
    enum: dict[str, int]  # the enum's or the flags' names -> values; {} for other types
    flags: bool  # type == "flags": values combine as "A,B"
    required: bool
    isUniqueKey: bool
    isCombinedKey: bool
    encrypted: bool
    caseSensitive: bool
    defaultValue: str | None  # as written in the schema; None when it has none


def _bool(node: ET.Element, name: str) -> bool:
    return (node.get(name) or "").strip().lower() == "true"


@lru_cache(maxsize=1)
def _sections() -> dict[str, ET.Element]:
    root = ET.parse(SCHEMA_PATH).getroot()
    return {node.get("name", ""): node for node in root.iter("sectionSchema")}


def section_names() -> tuple[str, ...]:
    """The sections the extract holds, in its order."""
    return tuple(_sections())


def section(path: str) -> ET.Element:
    """The <sectionSchema> element of a section path."""
    try:
        return _sections()[path]
    except KeyError:
        raise SchemaLookupError(
            f"no section {path!r} in {SCHEMA_PATH.name} (it holds {', '.join(_sections())})"
        ) from None


def _steps(node: ET.Element) -> dict[str, ET.Element]:
    """The steps a path can take from a node: child elements by name, collections by addElement."""
    out: dict[str, ET.Element] = {}
    for child in node:
        key = child.get("name") if child.tag == "element" else child.get("addElement") if child.tag == "collection" else None
        if key is None:
            continue
        if key in out:
            raise SchemaLookupError(f"{key!r} names both an element and a collection's add element here")
        out[key] = child
    return out


@lru_cache(maxsize=None)
def element(section_path: str, element_path: str = "") -> ET.Element:
    """The node of an element path under a section: the <sectionSchema>, an <element>, or the
    <collection> that stands for an add element."""
    node = section(section_path)
    walked: list[str] = []
    for step in element_path.split("/") if element_path else []:
        steps = _steps(node)
        if step not in steps:
            where = "/".join(walked) or "(the section)"
            raise SchemaLookupError(
                f"{section_path}: no element or collection add element {step!r} under {where} "
                f"(there: {', '.join(steps) or 'nothing'})"
            )
        node = steps[step]
        walked.append(step)
    return node


def _where(section_path: str, element_path: str) -> str:
    return f"{section_path}/{element_path}" if element_path else section_path


def attributes(section_path: str, element_path: str = "") -> dict[str, AttributeInfo]:
    """All attributes an element path has, by name, in schema order."""
    node = element(section_path, element_path)
    return {info["name"]: info for info in (_info(a) for a in node if a.tag == "attribute")}


def _number(text: str) -> int:
    text = text.strip()
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def _info(node: ET.Element) -> AttributeInfo:
    kind = node.get("type", "")
    values = {v.get("name", ""): _number(v.get("value", "")) for v in node if v.tag in ("enum", "flag")}
    return AttributeInfo(
        name=node.get("name", ""),
        type=kind,
        enum=values,
        flags=kind == "flags",
        required=_bool(node, "required"),
        isUniqueKey=_bool(node, "isUniqueKey"),
        isCombinedKey=_bool(node, "isCombinedKey"),
        encrypted=_bool(node, "encrypted"),
        caseSensitive=_bool(node, "caseSensitive"),
        defaultValue=node.get("defaultValue"),
    )


def attribute(section_path: str, element_path: str, name: str) -> AttributeInfo:
    """One attribute of an element path (element_path "" for the section's own attributes)."""
    found = attributes(section_path, element_path)
    if name not in found:
        raise SchemaLookupError(
            f"{_where(section_path, element_path)} has no attribute {name!r} (it has: {', '.join(found) or 'none'})"
        )
    return found[name]


def _named_values(section_path: str, element_path: str, attr: str) -> AttributeInfo:
    info = attribute(section_path, element_path, attr)
    if info["type"] not in ("enum", "flags"):
        raise TypeError(f"{_where(section_path, element_path)}/@{attr} is {info['type']}, not enum or flags")
    return info


def enum_value(section_path: str, element_path: str, attr: str, name: str) -> int:
    """The number of one enum (or single flag) name of an attribute."""
    info = _named_values(section_path, element_path, attr)
    if name not in info["enum"]:
        raise SchemaLookupError(
            f"{_where(section_path, element_path)}/@{attr} has no value {name!r} (it has: {', '.join(info['enum'])})"
        )
    return info["enum"][name]


def flags_value(section_path: str, element_path: str, attr: str, value: str) -> int:
    """The number of a flags attribute's value as IIS writes it, e.g. "Ssl,SslNegotiateCert" or
    "Ssl, SslNegotiateCert" -> 40. Every comma-separated name must be one of the attribute's flags."""
    info = _named_values(section_path, element_path, attr)
    if not info["flags"]:
        raise TypeError(f"{_where(section_path, element_path)}/@{attr} is enum, not flags")
    names = [part.strip() for part in value.split(",")]
    if not value.strip() or any(not n for n in names):
        raise ValueError(f"{_where(section_path, element_path)}/@{attr}: empty flag name in {value!r}")
    total = 0
    for n in names:
        total |= enum_value(section_path, element_path, attr, n)
    return total


def collection(section_path: str, element_path: str = "") -> ET.Element:
    """The <collection> of a path: the path of its add element ("manyToOneMappings/add", "mimeMap"),
    or of the element (or section) that holds exactly one collection ("manyToOneMappings", "")."""
    node = element(section_path, element_path)
    if node.tag == "collection":
        return node
    held = [child for child in node if child.tag == "collection"]
    if len(held) != 1:
        raise SchemaLookupError(f"{_where(section_path, element_path)} holds {len(held)} collections, not one")
    return held[0]


def unique_keys(section_path: str, collection_path: str = "") -> list[str]:
    """The collection's isUniqueKey attributes (each identifies an entry by itself), in schema order."""
    return [a.get("name", "") for a in collection(section_path, collection_path) if a.tag == "attribute" and _bool(a, "isUniqueKey")]


def combined_keys(section_path: str, collection_path: str = "") -> list[str]:
    """The collection's isCombinedKey attributes (together they identify an entry), in schema order."""
    return [a.get("name", "") for a in collection(section_path, collection_path) if a.tag == "attribute" and _bool(a, "isCombinedKey")]
