"""``docs/api.md``'s reference section and ``docs/openapi.json`` are the app's own: regenerate
them with ``python -m starter.api.reference`` when the API changes."""

from __future__ import annotations

from starter.api.reference import MARKER, openapi_document, render_reference, stale_files


def test_the_committed_reference_is_the_apps() -> None:
    assert stale_files() == [], "run: python -m starter.api.reference"


def test_the_reference_names_every_endpoint_and_code() -> None:
    document = openapi_document()
    text = render_reference(document)
    assert text.startswith(MARKER)
    for path, operations in document["paths"].items():
        for method in operations:
            assert f"`{method.upper()} {path}`" in text
    for code in ("unauthenticated", "account_not_found", "schema_outdated"):
        assert f"`{code}`" in text
    # The API answers a malformed parameter with 400 and the error body, never FastAPI's 422.
    for operations in document["paths"].values():
        for operation in operations.values():
            assert "422" not in operation["responses"]
