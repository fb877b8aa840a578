"""Writing results: the machine's description and the replacement of one ``## `` section of
``benchmarks/RESULTS.md`` (every benchmark owns one section)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else the machine type."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


NOTES = "### Notes"
"""Heading of the hand-written part of a generated section: kept when the section is made again."""


def replace_section(document: str, section: str) -> str:
    """``document`` with the section that ``section`` starts (its first line, a ``## ``
    heading, up to the next ``## `` heading) replaced by ``section``, or with it appended. The old
    section's :data:`NOTES` subsection, if any, follows the new one."""
    heading = section.split("\n", 1)[0]
    start = document.find(heading + "\n")
    if start < 0:
        return document.rstrip("\n") + "\n\n" + section
    end = document.find("\n## ", start + len(heading))
    tail = "" if end < 0 else document[end + 1 :]
    old = document[start:] if end < 0 else document[start : end + 1]
    notes = old.find("\n" + NOTES + "\n")
    if notes >= 0:
        section = section.rstrip("\n") + "\n\n" + old[notes + 1 :].rstrip("\n") + "\n"
    return document[:start] + section + ("\n" + tail if tail else "")
