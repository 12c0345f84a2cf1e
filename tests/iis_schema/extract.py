"""Write IIS_schema.extract.xml: the <sectionSchema> elements of IIS 10.0's IIS_schema.xml that the
beacon's IIS configuration touches, copied byte for byte, with a header naming the source.

    python tests/iis_schema/extract.py /tmp/IIS_schema.xml           # write the extract
    python tests/iis_schema/extract.py /tmp/IIS_schema.xml --check   # exit 1 when it differs

IIS_schema.xml is Microsoft's file (%windir%\\System32\\inetsrv\\config\\schema\\IIS_schema.xml); the
whole file stays out of this repository. SOURCE names the public copy the extract was made from;
the script refuses any other file (its git blob id must match), so the extract is reproducible.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

OUTPUT = Path(__file__).with_name("IIS_schema.extract.xml")

# The sections the converge script, the appcmd rendering and their tests read or write.
SECTIONS = (
    "system.applicationHost/sites",
    "system.webServer/security/access",
    "system.webServer/security/authentication/anonymousAuthentication",
    "system.webServer/security/authentication/iisClientCertificateMappingAuthentication",
    "system.webServer/serverRuntime",
    "system.webServer/security/requestFiltering",
    "system.webServer/staticContent",
    "system.webServer/security/authorization",
)


@dataclass(frozen=True)
class Provenance:
    repo: str  # GitHub owner/name
    path: str  # path of the file in that repository
    commit: str  # commit the file was read at
    blob: str  # git blob id of the file (what `git rev-parse COMMIT:PATH` prints)
    retrieved: str  # YYYY-MM-DD
    describes: str  # which IIS the file belongs to


SOURCE = Provenance(
    repo="lextm/iis_schema",
    path="IIS_schema.xml",
    commit="2a639ef765f9ec6f40248762618ca8528c9d199b",
    blob="0723619195e931edee422196682828b1f42f6f2b",
    retrieved="2026-12-07",
    describes='IIS 10.0 (commit "Added IIS 10 schema files.", 2015-10-04; the full-IIS file, not IIS Express)',
)

_START = re.compile(r'^[ \t]*<sectionSchema\s+name="([^"]+)"[^>]*?(/?)>', re.MULTILINE)
_END = "</sectionSchema>"


class ExtractError(ValueError):
    pass


def git_blob_id(data: bytes) -> str:
    """The id git gives a file with these bytes (sha1 of "blob <size>\\0" + data)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def section_texts(source: str) -> dict[str, str]:
    """Section name -> the exact text of its <sectionSchema> element, from the start of the line it
    opens on (its indentation included) to the end of its closing tag."""
    found: dict[str, str] = {}
    for match in _START.finditer(source):
        name = match.group(1)
        if match.group(2):  # <sectionSchema name="..." />
            end = match.end()
        else:
            close = source.find(_END, match.end())
            if close < 0:
                raise ExtractError(f"<sectionSchema name={name!r}> is not closed")
            end = close + len(_END)
        if name in found:
            raise ExtractError(f"<sectionSchema name={name!r}> appears twice")
        found[name] = source[match.start():end]
    return found


def _same(a: ET.Element, b: ET.Element) -> bool:
    return (
        a.tag == b.tag
        and a.attrib == b.attrib
        and (a.text or "").strip() == (b.text or "").strip()
        and len(a) == len(b)
        and all(_same(x, y) for x, y in zip(a, b))
    )


def _check_against_parse(source: str, texts: dict[str, str], wanted: Sequence[str]) -> None:
    """The text slices are the elements an XML parser sees: same names, same content."""
    parsed = {e.get("name", ""): e for e in ET.fromstring(source).iter("sectionSchema")}
    if set(parsed) != set(texts):
        raise ExtractError(f"text scan and XML parse disagree on the sections: {sorted(set(parsed) ^ set(texts))}")
    for name in wanted:
        if not _same(ET.fromstring(texts[name]), parsed[name]):
            raise ExtractError(f"the text of {name} does not parse to the element the file holds")


def header(provenance: Provenance, sections: Sequence[str]) -> str:
    lines = [
        "<!--",
        "",
        "    Extract of IIS_schema.xml, the IIS configuration schema that Windows installs as",
        "    %windir%\\System32\\inetsrv\\config\\schema\\IIS_schema.xml. Microsoft owns that file.",
        "",
        f"    Describes:  {provenance.describes}",
        f"    Repository: https://github.com/{provenance.repo}",
        f"    Path:       {provenance.path}",
        f"    Commit:     {provenance.commit}",
        f"    Git blob:   {provenance.blob}",
        f"    Retrieved:  {provenance.retrieved}",
        "",
        "    An unmodified extract: the sectionSchema elements below are copied byte for byte, in the",
        "    order of the source file; everything else in the source is left out. They are:",
        "",
        *(f"        {name}" for name in sections),
        "",
        "    Made by tests/iis_schema/extract.py (run it on the source file to reproduce this file).",
        "",
        "-->",
    ]
    text = "\n".join(lines)
    if "--" in text[4:-3]:
        raise ExtractError("the header would hold '--', which ends an XML comment")
    return text


def build_extract(source: str, sections: Sequence[str], provenance: Provenance) -> str:
    """The extract's text: the header, then the wanted sections in source order inside <configSchema>."""
    texts = section_texts(source)
    missing = [name for name in sections if name not in texts]
    if missing:
        raise ExtractError(f"the source has no <sectionSchema> for {missing}")
    _check_against_parse(source, texts, sections)
    ordered = [name for name in texts if name in set(sections)]
    body = "\n\n".join(texts[name] for name in ordered)
    return f"{header(provenance, ordered)}\n\n<configSchema>\n\n{body}\n\n</configSchema>\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("source", type=Path, help=f"the full IIS_schema.xml ({SOURCE.repo} {SOURCE.path} at {SOURCE.commit[:12]})")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="compare with --output instead of writing it")
    args = parser.parse_args(argv)
    data = args.source.read_bytes()
    blob = git_blob_id(data)
    if blob != SOURCE.blob:
        print(f"{args.source}: git blob {blob}, not {SOURCE.blob} ({SOURCE.repo} {SOURCE.path} at {SOURCE.commit})", file=sys.stderr)
        return 2
    try:
        text = build_extract(data.decode("utf-8"), SECTIONS, SOURCE)
    except ExtractError as exc:
        print(f"{args.source}: {exc}", file=sys.stderr)
        return 2
    output: Path = args.output
    if args.check:
        current = output.read_bytes().decode("utf-8") if output.exists() else None
        if current != text:
            print(f"{output} differs from the extract of {args.source}", file=sys.stderr)
            return 1
        return 0
    output.write_bytes(text.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
