"""docs/openapi.yaml matches the router table in fcgi/routes.c, lints clean
and follows the project's rules. Needs no running service.

Run from the repository root (after `npm ci`):
    /usr/bin/python3 -m pytest tests/integration/test_openapi.py
VTP_ROUTES_C=/some/routes.c points the route test at another file.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "docs" / "openapi.yaml"
ERRORS_MD = ROOT / "docs" / "errors.md"
ROUTES_C = Path(os.environ.get("VTP_ROUTES_C", ROOT / "fcgi" / "routes.c"))

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ROUTE_ROW = re.compile(r'\{\s*"(GET|POST|PUT|PATCH|DELETE)"\s*,\s*"(/[^"]*)"')
PUBLIC_OPERATIONS = {("GET", "/health")}


@pytest.fixture(scope="module")
def spec():
    with open(SPEC_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def operations(spec):
    """Yield (METHOD, path, operation object) for every operation."""
    for path, item in spec.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def resolve(spec, node):
    """Follow local $refs ("#/a/b") until a non-reference object."""
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local $refs are supported: {ref}"
        assert ref not in seen, f"$ref cycle at {ref}"
        seen.add(ref)
        node = spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def responses(spec, op):
    """{status code as str: resolved response object}"""
    return {str(k): resolve(spec, v) for k, v in op.get("responses", {}).items()}


def strip_c_comments(src):
    """Remove /* */ and // comments, keeping string and char literals."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            out.append(src[i:j + 1])
            i = j + 1
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * src.count("\n", i, j))
            i = j
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def route_rows():
    assert ROUTES_C.is_file(), f"{ROUTES_C} is missing: the router table must exist"
    src = strip_c_comments(ROUTES_C.read_text(encoding="utf-8"))
    return ROUTE_ROW.findall(src)


def fmt(pairs):
    return "\n".join(f"    {m} {p}" for m, p in sorted(pairs, key=lambda x: (x[1], x[0]))) or "    (none)"


def test_routes_table_matches_openapi(spec):
    routes = set(route_rows())
    documented = {(m, p) for m, p, _ in operations(spec)}
    only_c = routes - documented
    only_spec = documented - routes
    assert not only_c and not only_spec, (
        f"fcgi/routes.c ({ROUTES_C}) and docs/openapi.yaml disagree.\n"
        f"  routed but not documented:\n{fmt(only_c)}\n"
        f"  documented but not routed:\n{fmt(only_spec)}"
    )


def test_routes_table_has_no_duplicates():
    rows = route_rows()
    assert rows, f"no route rows found in {ROUTES_C}"
    dups = {r for r in rows if rows.count(r) > 1}
    assert not dups, f"duplicate rows in {ROUTES_C}:\n{fmt(dups)}"


def test_openapi_lints_clean():
    npm = shutil.which("npm")
    assert npm, "npm is not on PATH (Debian 12: the nodejs package provides it)"
    assert (ROOT / "node_modules" / ".bin" / "redocly").exists(), \
        "the linter is not installed: run `npm ci` in the repository root"
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
               NO_COLOR="1")
    proc = subprocess.run([npm, "run", "--silent", "lint:openapi"], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (
        f"`npm run lint:openapi` exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout[-8000:]}\n--- stderr\n{proc.stderr[-8000:]}"
    )


def test_document_basics(spec):
    assert str(spec.get("openapi", "")).startswith(("3.0.", "3.1.")), spec.get("openapi")
    assert [s.get("url") for s in spec.get("servers", [])] == ["/"], "servers must be [{url: /}]"
    for path in spec["paths"]:
        assert path == "/health" or path.startswith("/api/v1/"), \
            f"{path}: write full paths (/health or /api/v1/...)"


def test_every_operation_has_unique_operation_id(spec):
    ids = {}
    for method, path, op in operations(spec):
        oid = op.get("operationId")
        assert oid, f"{method} {path} has no operationId"
        assert oid not in ids, f"operationId {oid} used by {ids[oid]} and {method} {path}"
        ids[oid] = f"{method} {path}"


def test_every_operation_has_a_2xx_response(spec):
    for method, path, op in operations(spec):
        codes = responses(spec, op)
        assert any(c.startswith("2") for c in codes), \
            f"{method} {path} documents no 2xx response ({sorted(codes)})"


def test_protected_operations_need_bearer_and_document_401(spec):
    schemes = spec.get("components", {}).get("securitySchemes", {})
    bearer = {name for name, s in schemes.items()
              if s.get("type") == "http" and str(s.get("scheme", "")).lower() == "bearer"}
    assert bearer, "components.securitySchemes has no http bearer scheme"
    for method, path, op in operations(spec):
        if (method, path) in PUBLIC_OPERATIONS:
            continue
        security = op.get("security", spec.get("security", []))
        # Every alternative must include a bearer scheme; {} (anonymous) is not allowed.
        assert security, f"{method} {path} declares no security"
        for requirement in security:
            assert bearer & set(requirement), \
                f"{method} {path}: security alternative {requirement} has no bearer scheme"
        codes = responses(spec, op)
        assert "401" in codes, f"{method} {path} documents no 401 response"
        assert "WWW-Authenticate" in codes["401"].get("headers", {}), \
            f"{method} {path}: 401 lacks the WWW-Authenticate header"


def test_health_is_public(spec):
    op = spec["paths"]["/health"]["get"]
    assert op.get("security") == [], "GET /health must have `security: []`"
    codes = responses(spec, op)
    assert {"200", "503"} <= set(codes)
    assert "Retry-After" in codes["503"].get("headers", {})


def test_error_responses_are_problem_json(spec):
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "code"} <= set(problem["required"])
    for method, path, op in operations(spec):
        if (method, path) in PUBLIC_OPERATIONS:
            continue
        for code, resp in responses(spec, op).items():
            if code[0] in "45":
                content = resp.get("content", {})
                assert list(content) == ["application/problem+json"], \
                    f"{method} {path} {code}: error content must be application/problem+json"
        codes = responses(spec, op)
        if "503" in codes:
            assert "Retry-After" in codes["503"].get("headers", {}), \
                f"{method} {path} 503 lacks Retry-After"


def documented_codes():
    """{code: status} from the table in docs/errors.md."""
    table = {}
    for line in ERRORS_MD.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`([a-z_]+)`\s*\|\s*(\d{3})\s*\|", line)
        if m:
            assert m.group(1) not in table, f"{m.group(1)} listed twice in docs/errors.md"
            table[m.group(1)] = int(m.group(2))
    return table


def spec_codes(spec):
    """{(code, status)} that the responses of docs/openapi.yaml enumerate."""
    found = set()
    for name, resp in spec["components"].get("responses", {}).items():
        for media in resp.get("content", {}).values():
            schema = media.get("schema", {})
            for part in schema.get("allOf", []):
                props = part.get("properties", {})
                status = props.get("status", {}).get("const")
                for code in props.get("code", {}).get("enum", []):
                    assert status, f"components.responses.{name}: code {code} without status const"
                    found.add((code, status))
    return found


def test_error_codes_are_documented(spec):
    table = documented_codes()
    required = {
        "unauthorized": 401, "forbidden": 403, "not_found": 404,
        "recording_not_found": 404, "method_not_allowed": 405, "invalid_json": 400,
        "unknown_field": 400, "invalid_type": 400, "invalid_uuid": 400,
        "invalid_query": 400, "invalid_cursor": 400, "missing_field": 422,
        "invalid_value": 422, "recording_not_active": 409, "body_too_large": 413,
        "unsupported_media_type": 415, "db_unavailable": 503, "internal_error": 500,
    }
    for code, status in required.items():
        assert table.get(code) == status, f"docs/errors.md: {code} should be listed with {status}"
    used = spec_codes(spec)
    assert used, "no error codes enumerated in components.responses"
    for code, status in used:
        assert table.get(code) == status, \
            f"docs/openapi.yaml uses {code} with status {status}; docs/errors.md says {table.get(code)}"
