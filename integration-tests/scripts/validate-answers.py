"""Every operation of an OpenAPI document called with the ids of real data, and each answer
validated by schemathesis against the document: status documented, content type,
headers, and the body of the documented schema. A fuzzer's random ids find nothing, so
this is what shows the rows as they are answered match their schemas.

Usage: validate-answers.py BASE_URL. Path parameters `{id}` take ids read from the
service's own lists (customers, managers, complaints); every enum parameter is tried
with each of its values, one at a time; a route taking `from` and `to` is asked for a year
back and two ahead (the demo's day runs past today). Prints the number of cases; exits 1 at the first failure.
"""

import sys
import datetime

import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# The checks that hold for any caller (as api_fuzz.rs runs them): the service under test
# runs without authentication, so schemathesis's own authentication checks do not apply.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def ids(base):
    """Real ids of each kind, from the lists."""

    def first(path, key, n=3):
        items = requests.get(f"{base}{path}", timeout=60).json()["items"]
        return [row[key] for row in items[:n]]

    return {
        "customers": first("/v1/customers?limit=3", "customer_id"),
        "managers": first("/v1/managers", "manager_id"),
        "complaints": first("/v1/complaints?limit=3", "complaint_id")
        + first("/v1/complaints?status=closed&limit=1", "complaint_id")
        + first("/v1/complaints?status=open&limit=1", "complaint_id"),
    }


def queries(operation):
    """The query parameters to try: none, then each enum value of each parameter."""
    params = operation.definition.raw.get("parameters", [])
    names = {p["name"] for p in params}
    base = {}
    if "from" in names and "to" in names:
        now = datetime.datetime.now(datetime.timezone.utc)
        base = {
            "from": (now - datetime.timedelta(days=365)).isoformat(),
            "to": (now + datetime.timedelta(days=700)).isoformat(),
        }
    yield dict(base)
    for p in params:
        for value in p.get("schema", {}).get("enum", []):
            if p["name"] == "format":
                continue
            yield {**base, p["name"]: value}


def main(base):
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    found = ids(base)
    assert all(found.values()), f"the data has no ids of some kind: {found}"
    cases = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        path = operation.path
        # The kind of id a path takes: /v1/managers/{id}/…, /v1/audit/managers/{id}/…,
        # /v1/complaints/{id}; customers otherwise.
        kind = next(
            (k for k in ("managers", "complaints") if f"/{k}/{{id}}" in path), "customers"
        )
        id_values = found[kind] if "{id}" in path else [None]
        for id_value in id_values:
            for query in queries(operation):
                case = operation.Case(
                    path_parameters={"id": id_value} if id_value else {},
                    query=query,
                )
                response = case.call(base_url=base)
                case.validate_response(response, checks=CHECKS)
                assert response.status_code == 200, (
                    f"{operation.label} {id_value} {query}: {response.status_code} "
                    f"{response.text[:500]}"
                )
                cases += 1
    print(f"{cases} answers over real data match the document")


if __name__ == "__main__":
    main(sys.argv[1])
