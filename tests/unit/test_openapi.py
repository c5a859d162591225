"""The OpenAPI document says what the routes do: bodies, keys, error statuses, the envelope.

The app is built without its lifespan (no engine, no store): the document is generated from the
routes alone. ``tests/integration/test_schemathesis.py`` proves it against the real gateway.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import Settings

HAND_PARSED = {
    "/v1/chat/completions": "ChatCompletionRequest",
    "/v1/feedback": "FeedbackCreate",
    "/v1/feedback/batch": "FeedbackBatchCreate",
}


def build(**overrides):
    settings = Settings(api_keys=["sk-unit"], admin_key="pk-unit", **overrides)
    return create_app(settings)


@pytest.fixture(scope="module")
def document() -> dict:
    return build().openapi()


def operations(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_hand_parsed_bodies_are_declared_with_their_wire_models(document):
    schemas = document["components"]["schemas"]
    for path, model in HAND_PARSED.items():
        body = document["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
    chat = schemas["ChatCompletionRequest"]
    assert set(chat["required"]) == {"model", "messages"}
    assert chat["properties"]["messages"]["items"] == {"$ref": "#/components/schemas/ChatMessage"}
    assert schemas["FeedbackBatchCreate"]["properties"]["items"]["items"]["$ref"].endswith("/FeedbackCreate")


def test_every_ref_resolves(document):
    import json

    text = json.dumps(document)
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs <= set(document["components"]["schemas"]), refs - set(document["components"]["schemas"])


def test_limits_from_the_settings_are_in_the_document():
    schemas = build(max_completion_tokens=64, max_n=3, max_messages=5).openapi()["components"]["schemas"]
    chat = schemas["ChatCompletionRequest"]["properties"]
    assert chat["max_tokens"]["anyOf"][0]["maximum"] == 64
    assert chat["max_completion_tokens"]["anyOf"][0]["maximum"] == 64
    assert chat["n"]["anyOf"][0]["maximum"] == 3
    assert chat["messages"]["maxItems"] == 5


def test_keyed_routes_declare_their_scheme_and_401(document):
    app = build()
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["apiKey"]["description"],
    }
    assert schemes["adminKey"]["scheme"] == "bearer"
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            op = document["paths"][route.path_format][method.lower()]
            if route.path_format.startswith("/admin"):
                expected = [{"adminKey": []}]
            elif route.path_format.startswith("/v1"):
                expected = [{"apiKey": []}]
            else:
                expected = None
            assert op.get("security") == expected, (method, route.path_format)
            assert ("401" in op["responses"]) == (expected is not None), (method, route.path_format)


def test_open_gateway_declares_no_api_key_on_v1():
    document = create_app(Settings(api_keys=[], admin_key="pk-unit")).openapi()
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert "security" not in chat and "401" not in chat["responses"]
    assert document["paths"]["/admin/engine"]["get"]["security"] == [{"adminKey": []}]


def test_errors_use_the_envelope_and_never_422(document):
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error"]
    detail = schemas["ErrorDetail"]
    assert set(detail["required"]) == {"message", "type", "param", "code"}
    assert "HTTPValidationError" not in schemas
    for path, method, op in operations(document):
        responses = op["responses"]
        assert "422" not in responses, (method, path)
        for status, response in responses.items():
            if int(status) >= 400 and path != "/health":
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error", (method, path, status)
        if "requestBody" in op:
            assert {"400", "413"} <= set(responses), (method, path)
        if op.get("parameters"):
            assert "400" in responses, (method, path)


def test_route_specific_errors(document):
    paths = document["paths"]
    assert {"404", "502", "503"} <= set(paths["/v1/chat/completions"]["post"]["responses"])
    assert {"404", "409", "503"} <= set(paths["/v1/feedback"]["post"]["responses"])
    assert set(paths["/v1/chat/completions"]["post"]["responses"]["200"]["content"]) == {
        "application/json",
        "text/event-stream",
    }
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert "404" in paths["/admin/versions/{version_id}"]["get"]["responses"]
    assert paths["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ModelList"
    }


def test_the_document_is_valid_openapi(document):
    assert document["openapi"].startswith("3.")
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # raises on an invalid document
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(1 for _ in globals()["operations"](document))


def test_docs_served_by_default_and_switched_off():
    on = TestClient(build())  # no `with`: the lifespan (engine, store) does not start
    assert on.get("/docs").status_code == 200
    assert on.get("/redoc").status_code == 200
    assert on.get("/openapi.json").status_code == 200
    off = TestClient(build(docs_enabled=False))
    assert off.get("/docs").status_code == 404
    assert off.get("/redoc").status_code == 404
    assert off.get("/openapi.json").status_code == 200


def test_405_allows_the_methods_of_every_route_on_the_path():
    client = TestClient(build())
    # GET and POST /v1/feedback are two routes; Starlette's own Allow named only the first.
    reply = client.put("/v1/feedback")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "GET, POST"
    assert reply.json()["error"]["code"] == "method_not_allowed"
    assert client.delete("/v1/chat/completions").headers["allow"] == "POST"
    reply = client.post("/admin/suites/x")  # only DELETE /admin/suites/{name}
    assert reply.status_code == 405 and reply.headers["allow"] == "DELETE"
