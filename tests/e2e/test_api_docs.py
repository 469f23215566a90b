"""docs/api.md matches the server: every `http request` block of its
"Examples (checked)" section is sent, in order, to one `stockade serve` (sim
backend, the example AccessPolicy and its demo tokens) and the answer is
compared with the `http response` block that follows it, by the rules the
section states. Nothing is sent anywhere but 127.0.0.1.
"""
import http.client
import json
import os
import re

import pytest

from conftest import ROOT
from test_gateway import Gateway

API_MD = ROOT / "docs" / "api.md"
BLOCK = re.compile(r"^```http (request|response)\n(.*?)^```$", re.S | re.M)
ANY = "<any>"


def exchanges(text):
    """[(request text, response text)] in document order; a request without
    its response (or the reverse) is a broken document."""
    blocks = [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]
    pairs = []
    for i in range(0, len(blocks), 2):
        kinds = [b[0] for b in blocks[i:i + 2]]
        assert kinds == ["request", "response"], f"block {i}: {kinds} (a request, then its response)"
        pairs.append((blocks[i][1], blocks[i + 1][1]))
    return pairs


def split_message(text):
    head, _, body = text.rstrip("\n").partition("\n\n")
    lines = head.split("\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        assert sep, f"not a header: {line!r}"
        headers.append((name.strip(), value.strip()))
    return lines[0], headers, body.rstrip("\n")


def json_matches(want, got, where="$"):
    """want == got, where the string "<any>" matches any value."""
    if want == ANY:
        return []
    if isinstance(want, dict):
        if not isinstance(got, dict) or list(want) != list(got):
            return [f"{where}: keys {list(got) if isinstance(got, dict) else got!r}, want {list(want)}"]
        return [e for k in want for e in json_matches(want[k], got[k], f"{where}.{k}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(want) != len(got):
            return [f"{where}: {got!r}, want {len(want)} items"]
        return [e for i, (w, g) in enumerate(zip(want, got)) for e in json_matches(w, g, f"{where}[{i}]")]
    return [] if want == got and type(want) is type(got) else [f"{where}: {got!r}, want {want!r}"]


def send(port, request):
    line, headers, body = split_message(request)
    method, target, version = line.split(" ")
    assert version == "HTTP/1.1", line
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request(method, target, body=body.encode() if body else None, headers=dict(headers))
        r = c.getresponse()
        return r.status, r.reason, dict((k.lower(), v) for k, v in r.getheaders()), r.read().decode()
    finally:
        c.close()


def compare(want_text, got):
    status, reason, headers, body = got
    line, want_headers, want_body = split_message(want_text)
    errors = []
    if f"HTTP/1.1 {status} {reason}" != line:
        errors.append(f"status line: HTTP/1.1 {status} {reason}, want {line}")
    for name, value in want_headers:
        if headers.get(name.lower()) != value:
            errors.append(f"header {name}: {headers.get(name.lower())!r}, want {value!r}")
    if want_body.startswith("{"):
        try:
            errors += json_matches(json.loads(want_body), json.loads(body))
        except ValueError as e:
            errors.append(f"body is not JSON ({e}): {body!r}")
    else:
        got_lines = body.split("\n")
        errors += [f"body lacks the line {w!r}" for w in want_body.split("\n") if w not in got_lines]
    return errors


def test_document_has_examples():
    pairs = exchanges(API_MD.read_text())
    # the conventions the examples show: 401 with WWW-Authenticate, 405
    # with Allow, /metrics behind its verb, a refused input named
    text = "\n".join(r for _, r in pairs)
    for want in ("WWW-Authenticate:", "Allow:", "403 Forbidden", '"refused"', "201 Created"):
        assert want in text, want


def test_every_example_matches_the_server(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("serve's state directory setup needs root")
    pairs = exchanges(API_MD.read_text())
    g = Gateway(tmp_path, backend="sim")
    try:
        failures = []
        for i, (req, resp) in enumerate(pairs):
            errors = compare(resp, send(g.port, req))
            if errors:
                failures.append(f"example {i + 1} ({req.splitlines()[0]}):\n  " + "\n  ".join(errors))
        assert not failures, "\n".join(failures)
    finally:
        g.stop()
        g.cleanup()


def test_the_comparison_can_fail():
    """The rules catch a changed status, header, JSON value or text line."""
    want = 'HTTP/1.1 405 Method Not Allowed\nAllow: GET, POST\n\n{"a":"<any>","b":1}'
    ok = (405, "Method Not Allowed", {"allow": "GET, POST"}, '{"a":[1],"b":1}')
    assert compare(want, ok) == []
    assert compare(want, (404, "Not Found", ok[2], ok[3]))
    assert compare(want, (405, ok[1], {"allow": "GET"}, ok[3]))
    assert compare(want, (405, ok[1], ok[2], '{"a":1,"b":2}'))
    assert compare(want, (405, ok[1], ok[2], '{"a":1,"b":1,"c":0}'))
    assert compare("HTTP/1.1 200 OK\n\nx 1", (200, "OK", {}, "x 2\ny"))
