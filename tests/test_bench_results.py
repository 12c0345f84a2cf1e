"""bench/results.py: benchmark rows land in their own section's table of BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

from bench.results import append_rows


def test_rows_go_after_the_last_row_of_their_section(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Plan\n\nintro\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n## PKI\n\ntext\n")
    append_rows(path, "## Plan", ["| 3 | 4 |"])
    append_rows(path, "## PKI", ["| x | y |"], table_head="| h | i |\n|---|---|\n")
    append_rows(path, "## New", ["| n | m |"], intro="new intro", table_head="| c | d |\n|---|---|\n")
    append_rows(path, "## New", ["| o | p |"])
    assert path.read_text() == (
        "# Benchmarks\n\n## Plan\n\nintro\n\n| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n\n"
        "## PKI\n\ntext\n\n| h | i |\n|---|---|\n| x | y |\n\n"
        "## New\n\nnew intro\n\n| c | d |\n|---|---|\n| n | m |\n| o | p |\n"
    )


def test_every_benchmark_writes_into_its_own_section(tmp_path: Path) -> None:
    from bench import bundle, pki, plan, readiness, replay

    path = tmp_path / "BENCHMARKS.md"
    path.write_text((Path(__file__).resolve().parent.parent / "BENCHMARKS.md").read_text())
    plan.append_row(path, "| plan-row |")
    replay.append_row(path, "| replay-row |")
    readiness.append_row(path, "| readiness-row |")
    pki.write_rows(path, ["| pki-row |"])
    bundle.write_rows(path, ["| bundle-row |"])
    lines = path.read_text().splitlines()
    for tag, section in (("plan-row", "## Plan"), ("replay-row", "## Firewall replay"), ("readiness-row", "## Readiness"),
                         ("pki-row", "## PKI"), ("bundle-row", bundle.SECTION)):
        row, start = lines.index(f"| {tag} |"), lines.index(section)
        following = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        assert start < row < following and lines[row - 1].startswith("|"), tag
