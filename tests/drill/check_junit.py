#!/usr/bin/env python3
"""Reads a drill's JUnit XML with the standard library's parser (not drplan's code) and
checks the structure CI systems rely on; prints a JSON summary for the Rust test.

Usage: check_junit.py FILE
"""
import json
import sys
import xml.etree.ElementTree as ET


def fail(message):
    print(f"check_junit: {message}", file=sys.stderr)
    sys.exit(1)


def main(path):
    root = ET.parse(path).getroot()
    if root.tag != "testsuites":
        fail(f"root element is <{root.tag}>, not <testsuites>")
    suites = root.findall("testsuite")
    if len(suites) != 1:
        fail(f"expected one <testsuite>, found {len(suites)}")
    suite = suites[0]
    cases = suite.findall("testcase")
    failures = [c for c in cases if c.find("failure") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    for element in (root, suite):
        if int(element.get("tests")) != len(cases):
            fail(f"<{element.tag}> says tests={element.get('tests')}, has {len(cases)} test cases")
        if int(element.get("failures")) != len(failures):
            fail(f"<{element.tag}> says failures={element.get('failures')}, has {len(failures)}")
        if int(element.get("skipped")) != len(skipped):
            fail(f"<{element.tag}> says skipped={element.get('skipped')}, has {len(skipped)}")
        float(element.get("time"))
    for case in cases:
        if not case.get("name") or not case.get("classname"):
            fail(f"a test case lacks name or classname: {case.attrib}")
        float(case.get("time"))
        failure = case.find("failure")
        if failure is not None and not failure.get("message"):
            fail(f"the failure of {case.get('name')} has no message")
    summary = {
        "suite": suite.get("name"),
        "cases": [
            {
                "class": c.get("classname").rsplit(".", 1)[-1],
                "name": c.get("name"),
                "failure": (c.find("failure").get("message") if c.find("failure") is not None else None),
                "skipped": c.find("skipped") is not None,
            }
            for c in cases
        ],
        "properties": {p.get("name"): p.get("value") for p in suite.iter("property")},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: check_junit.py FILE")
    main(sys.argv[1])
