"""JUnit XML, the report CI systems read: test suites of test cases, each passed,
failed, in error or skipped. ``llmship eval`` writes one (a suite per gate) and so
does ``llmship loadtest`` (a testcase per SLO); this module needs only the
standard library, so the load tester does not load the eval package.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["JUnitCase", "JUnitSuite", "junit_xml", "xml_text"]

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class JUnitCase:
    """One test case: passed, failed (``failure``), in error (``error``) or skipped."""

    name: str
    classname: str
    time_s: float = 0.0
    failure: str | None = None
    """The failure message (one line); the case failed when set."""
    details: str | None = None
    """Longer text inside the failure, error or ``system-out`` element."""
    error: str | None = None
    """Set when the case could not run at all (not a failed check)."""
    skipped: str | None = None


@dataclass(frozen=True)
class JUnitSuite:
    """A named group of test cases, with optional properties (seed, dataset, ...)."""

    name: str
    cases: Sequence[JUnitCase]
    properties: Mapping[str, str] = field(default_factory=dict)
    timestamp: str | None = None
    """ISO 8601, when the suite ran."""

    @property
    def failures(self) -> int:
        return sum(1 for c in self.cases if c.failure is not None and c.error is None)

    @property
    def errors(self) -> int:
        return sum(1 for c in self.cases if c.error is not None)

    @property
    def skipped(self) -> int:
        return sum(
            1 for c in self.cases if c.skipped is not None and c.failure is None and c.error is None
        )

    @property
    def time_s(self) -> float:
        return sum(c.time_s for c in self.cases)


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (model output may have them)."""
    return _XML_ILLEGAL.sub("\ufffd", text)


def junit_xml(suites: Sequence[JUnitSuite], *, name: str = "llmship") -> str:
    """JUnit XML (the de-facto schema Jenkins, GitLab and GitHub reporters read)."""
    root = ET.Element(
        "testsuites",
        name=xml_text(name),
        tests=str(sum(len(s.cases) for s in suites)),
        failures=str(sum(s.failures for s in suites)),
        errors=str(sum(s.errors for s in suites)),
        skipped=str(sum(s.skipped for s in suites)),
        time=f"{sum(s.time_s for s in suites):.3f}",
    )
    for suite in suites:
        attrs = {
            "name": xml_text(suite.name),
            "tests": str(len(suite.cases)),
            "failures": str(suite.failures),
            "errors": str(suite.errors),
            "skipped": str(suite.skipped),
            "time": f"{suite.time_s:.3f}",
        }
        if suite.timestamp:
            attrs["timestamp"] = suite.timestamp
        node = ET.SubElement(root, "testsuite", attrs)
        if suite.properties:
            props = ET.SubElement(node, "properties")
            for key, value in suite.properties.items():
                ET.SubElement(props, "property", name=xml_text(key), value=xml_text(value))
        for case in suite.cases:
            element = ET.SubElement(
                node,
                "testcase",
                name=xml_text(case.name),
                classname=xml_text(case.classname),
                time=f"{case.time_s:.3f}",
            )
            if case.error is not None:
                child = ET.SubElement(element, "error", message=xml_text(case.error))
                child.text = xml_text(case.details or case.error)
            elif case.failure is not None:
                child = ET.SubElement(element, "failure", message=xml_text(case.failure))
                child.text = xml_text(case.details or case.failure)
            elif case.skipped is not None:
                ET.SubElement(element, "skipped", message=xml_text(case.skipped))
            elif case.details:
                ET.SubElement(element, "system-out").text = xml_text(case.details)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
