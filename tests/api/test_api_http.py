"""The read API's HTTP endpoints over a real uvicorn server, on SQLite and PostgreSQL: what each
answers, tenancy (another tenant's object is a missing one), keys, cursors and the error
contract."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from api_helpers import Api, TenantData, start_api

from ledger_db import Ledger
from ledger_db.api_keys import create_api_key, revoke_api_key
from starter.error_codes import ERROR_STATUSES, HTTP_STATUSES


def _get(api: Api, key: str | None, path: str, **params: Any) -> tuple[int, Any]:
    with api.client(key) as client:
        response = client.get(path, params=params)
    return response.status_code, response.json()


def _no_minor_units(value: Any, path: str = "") -> None:
    """Money crosses the API as text only: no ``*_minor`` integer outside event payloads."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert not key.endswith("_minor") or "payload" in path, f"{path}.{key}"
            _no_minor_units(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            _no_minor_units(item, path)


def test_every_endpoint_answers_the_ledgers_records(api: Api) -> None:
    ledger, alpha = api.ledger, api.alpha
    key = alpha.key
    buyer = alpha.accounts[0]

    status, health = _get(api, None, "/v1/healthz")
    assert (status, health["status"], health["events"]) == (200, "ok", "outbox")
    assert health["schema_revision"] == "0005"

    status, account = _get(api, key, f"/v1/accounts/{buyer}")
    assert status == 200
    assert (account["account_id"], account["kind"], account["currency"]) == (buyer, "agent", "USD")
    assert account["overdraft_limit"] == "0.00"

    expected = ledger.get_balance(buyer, tenant_id="alpha")
    status, balance = _get(api, key, f"/v1/accounts/{buyer}/balance")
    assert status == 200
    assert balance == {
        "tenant_id": "alpha",
        "account_id": buyer,
        "currency": "USD",
        "posted": expected.posted,
        "held": expected.held,
        "available": expected.available,
        "overdraft_limit": "0.00",
        "journal_sequence": expected.journal_sequence,
        "as_of": None,
    }
    # 300.00 deposited; 25.50 captured; 5.00 still held by the active hold.
    assert (balance["posted"], balance["held"], balance["available"]) == (
        "274.50",
        "5.00",
        "269.50",
    )
    first_deposit = ledger.get_transaction(alpha.transaction_ids[0], tenant_id="alpha")
    recorded = first_deposit.entries[0].recorded_at.isoformat()
    status, early = _get(api, key, f"/v1/accounts/{buyer}/balance", as_of=recorded)
    assert (status, early["posted"], early["held"], early["as_of"]) == (
        200,
        "100.00",
        "0.00",
        early["as_of"],
    )
    assert early["as_of"] is not None

    status, page = _get(api, key, f"/v1/accounts/{buyer}/entries")
    assert status == 200 and page["next_cursor"] is None
    journal = ledger.list_ledger_entries(buyer, tenant_id="alpha", limit=100).entries
    assert [entry["ledger_entry_id"] for entry in page["entries"]] == [
        entry.ledger_entry_id for entry in journal
    ]
    for wire_entry, entry in zip(page["entries"], journal, strict=True):
        assert wire_entry["amount"] == entry.amount and wire_entry["currency"] == "USD"
        assert wire_entry["direction"] == entry.direction.value
        assert wire_entry["occurred_at"] == entry.model_dump(mode="json")["occurred_at"]
    _no_minor_units(page)

    captured_id, released_id, active_id = alpha.hold_ids
    status, hold = _get(api, key, f"/v1/holds/{captured_id}")
    assert status == 200
    assert (hold["state"], hold["amount"], hold["captured"], hold["released"]) == (
        "captured",
        "40.00",
        "25.50",
        "14.50",
    )
    assert hold["finalized"] is True and hold["fee"] == "0.25"

    status, listed = _get(api, key, "/v1/holds")
    assert status == 200 and listed["next_cursor"] is None
    assert [item["hold_id"] for item in listed["holds"]] == alpha.hold_ids
    status, active = _get(api, key, "/v1/holds", state="active")
    assert [item["hold_id"] for item in active["holds"]] == [active_id]
    status, by_account = _get(api, key, "/v1/holds", account=buyer, state="released")
    assert [item["hold_id"] for item in by_account["holds"]] == [released_id]
    status, expiring = _get(api, key, "/v1/holds", expires_before="2000-01-01T00:00:00Z")
    assert (status, expiring["holds"]) == (200, [])

    capture_transaction = ledger.get_hold(captured_id, tenant_id="alpha").resolve_transaction_id
    assert capture_transaction is not None
    status, transaction = _get(api, key, f"/v1/transactions/{capture_transaction}")
    assert status == 200
    assert (transaction["kind"], transaction["transaction_id"]) == ("capture", capture_transaction)
    assert [entry["amount"] for entry in transaction["entries"]] == [
        "25.50",
        "25.50",
        "14.50",
        "14.50",
    ]

    status, report = _get(api, key, "/v1/reports", group_by="reason", include_internal="true")
    assert status == 200
    assert report["group_by"] == ["reason"]
    assert report["filter"]["tenant_id"] == "alpha"
    totals = {row["reason"]: row for row in report["rows"]}
    assert totals["TOP_UP"]["total_in"] == "300.00"
    assert all(row["currency"] == "USD" for row in report["rows"])

    status, events = _get(api, key, "/v1/events")
    assert status == 200 and events["has_more"] is False
    outbox = ledger.list_events(tenant_id="alpha", limit=100)
    assert [event["event_id"] for event in events["events"]] == [e.event_id for e in outbox]
    assert [event["type"] for event in events["events"]] == [
        "INTENT_CREATED",
        "ORDER_CREATED",
        "PAYMENT_SUCCEEDED",
        "INTENT_CREATED",
        "HOLD_RELEASED",
        "INTENT_CREATED",
    ]
    assert events["last_sequence"] == outbox[-1].sequence
    first = events["events"][0]
    assert set(first) == {
        "event_id",
        "type",
        "version",
        "tenant_id",
        "occurred_at",
        "hold_id",
        "order_id",
        "account_id",
        "transaction_id",
        "payload",
        "sequence",
    }
    assert first["payload"]["billing"]["amount"] == "40.00"


def test_another_tenants_objects_answer_exactly_like_missing_ones(api: Api) -> None:
    alpha, beta = api.alpha, api.beta
    buyer = alpha.accounts[0]
    missing_account = f"x-{uuid.uuid4().hex[:8]}"
    missing_hold = str(uuid.uuid4())
    missing_transaction = str(uuid.uuid4())
    # (path with alpha's ID, the same path with an ID that exists nowhere, the ID, the other)
    matrix = [
        (f"/v1/accounts/{buyer}", f"/v1/accounts/{missing_account}", buyer, missing_account),
        (
            f"/v1/accounts/{buyer}/balance",
            f"/v1/accounts/{missing_account}/balance",
            buyer,
            missing_account,
        ),
        (
            f"/v1/accounts/{buyer}/entries",
            f"/v1/accounts/{missing_account}/entries",
            buyer,
            missing_account,
        ),
        *(
            (f"/v1/holds/{hold_id}", f"/v1/holds/{missing_hold}", hold_id, missing_hold)
            for hold_id in alpha.hold_ids
        ),
        *(
            (
                f"/v1/transactions/{transaction_id}",
                f"/v1/transactions/{missing_transaction}",
                transaction_id,
                missing_transaction,
            )
            for transaction_id in alpha.transaction_ids
        ),
    ]
    for foreign_path, missing_path, foreign_id, missing_id in matrix:
        with api.client(beta.key) as client:
            foreign = client.get(foreign_path)
            missing = client.get(missing_path)
        assert foreign.status_code == missing.status_code == 404, foreign_path
        assert foreign.headers["content-type"] == missing.headers["content-type"]
        assert foreign.json()["error"]["code"] == missing.json()["error"]["code"]
        assert foreign.json()["error"]["code"].endswith("_not_found")
        # The very same body, but for the ID it names.
        assert foreign.text.replace(foreign_id, "ID") == missing.text.replace(missing_id, "ID")
        # And alpha's own key does see it.
        with api.client(alpha.key) as client:
            assert client.get(foreign_path).status_code == 200, foreign_path

    # Filters naming alpha's objects find nothing for beta, as for objects that do not exist.
    for path, params in [
        ("/v1/holds", {"account": buyer}),
        ("/v1/reports", {"account": buyer}),
    ]:
        with api.client(beta.key) as client:
            foreign = client.get(path, params=params)
            missing = client.get(path, params={"account": missing_account})
        assert foreign.status_code == missing.status_code == 200
        assert foreign.text.replace(buyer, "ID") == missing.text.replace(missing_account, "ID")
        body = foreign.json()
        assert body.get("holds", []) == [] and body.get("rows", []) == []
    status, events = _get(api, beta.key, "/v1/events")
    assert status == 200
    assert {event["tenant_id"] for event in events["events"]} == {"beta"}
    assert not set(alpha.hold_ids) & {event["hold_id"] for event in events["events"]}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/accounts/a-buyer",
        "/v1/accounts/a-buyer/balance",
        "/v1/accounts/a-buyer/entries",
        "/v1/holds",
        "/v1/holds/{hold}",
        "/v1/transactions/{transaction}",
        "/v1/reports",
        "/v1/events",
    ],
)
def test_missing_invalid_and_revoked_keys_are_401(api: Api, path: str) -> None:
    path = path.format(hold=api.alpha.hold_ids[0], transaction=api.alpha.transaction_ids[0])
    with api.client(api.alpha.key) as client:
        assert client.get(path).status_code == 200
    forged = api.alpha.key[:-4] + ("AAAA" if not api.alpha.key.endswith("AAAA") else "BBBB")
    unknown = f"clk_{uuid.uuid4().hex[:12]}_{'x' * 43}"
    cases = {
        None: "no API key",
        "not-a-key": "not valid",
        forged: "not valid",
        unknown: "not valid",
        api.revoked_key: "revoked",
    }
    for key, message in cases.items():
        with api.client(key) as client:
            response = client.get(path)
        assert response.status_code == 401, (key, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["code"] == "unauthenticated" and message in error["message"]
    # The wrong scheme is a missing key.
    with api.client(None) as client:
        response = client.get(path, headers={"Authorization": f"Basic {api.alpha.key}"})
    assert response.status_code == 401


def test_a_key_revoked_while_the_server_runs_is_refused_at_once(api: Api) -> None:
    made = create_api_key(api.ledger.engine, tenant_id="alpha", name="short-lived")
    with api.client(made.key) as client:
        assert client.get("/v1/events").status_code == 200
        revoke_api_key(api.ledger.engine, made.api_key.key_id)
        response = client.get("/v1/events")
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_cursors_walk_every_page_once(ledger: Ledger) -> None:
    data = _many(ledger)
    with start_api(ledger) as server:
        api = Api(server=server, ledger=ledger, alpha=data, beta=data, revoked_key="")
        buyer = data.accounts[0]
        everything = _get(api, data.key, f"/v1/accounts/{buyer}/entries", limit=1000)[1]
        assert everything["next_cursor"] is None
        pages, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 7}
            if cursor is not None:
                params["cursor"] = cursor
            status, page = _get(api, data.key, f"/v1/accounts/{buyer}/entries", **params)
            assert status == 200 and len(page["entries"]) <= 7
            pages.append(page["entries"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        # 15 deposits and 9 freezes: 24 entries on the account (the hold bucket has its own).
        assert [len(page) for page in pages] == [7, 7, 7, 3]
        assert [entry for page in pages for entry in page] == everything["entries"]

        all_holds = _get(api, data.key, "/v1/holds", limit=1000)[1]["holds"]
        assert len(all_holds) == 9
        walked, cursor = [], None
        while True:
            params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
            status, page = _get(api, data.key, "/v1/holds", **params)
            assert status == 200
            walked.append([hold["hold_id"] for hold in page["holds"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [len(page) for page in walked] == [4, 4, 1]
        assert [hold for page in walked for hold in page] == [h["hold_id"] for h in all_holds]
        # A full last page says so: no cursor to a page that would be empty.
        status, exact = _get(api, data.key, "/v1/holds", limit=9)
        assert exact["next_cursor"] is None

        events = _get(api, data.key, "/v1/events", limit=1000)[1]["events"]
        seen, after = [], 0
        while True:
            status, page = _get(api, data.key, "/v1/events", after=after, limit=4)
            seen.extend(page["events"])
            after = page["last_sequence"]
            if not page["has_more"]:
                break
        assert seen == events and len(events) == 9
        # Past the end: nothing, and the same sequence to come back with.
        status, tail = _get(api, data.key, "/v1/events", after=after)
        assert (tail["events"], tail["last_sequence"], tail["has_more"]) == ([], after, False)


def _many(ledger: Ledger) -> TenantData:
    ledger.open_account(
        tenant_id="gamma", account_id="g-buyer", currency="EUR", idempotency_key="o"
    )
    for index in range(15):
        ledger.deposit("g-buyer", "10.00", tenant_id="gamma", idempotency_key=f"d-{index}")
    hold_ids = [
        ledger.freeze(
            "g-buyer",
            "1.00",
            "NEGOTIATION",
            tenant_id="gamma",
            idempotency_key=f"f-{index}",
            ttl_seconds=600,
        ).hold_id
        for index in range(9)
    ]
    made = create_api_key(ledger.engine, tenant_id="gamma")
    return TenantData(
        tenant_id="gamma",
        key=made.key,
        key_id=made.api_key.key_id,
        accounts=["g-buyer"],
        hold_ids=hold_ids,
    )


def test_the_error_contract(api: Api) -> None:
    key = api.alpha.key
    buyer = api.alpha.accounts[0]
    cases = [
        (f"/v1/accounts/{buyer}/entries", {"limit": 0}, 400, "invalid_request"),
        (f"/v1/accounts/{buyer}/entries", {"limit": 1001}, 400, "invalid_request"),
        (f"/v1/accounts/{buyer}/entries", {"cursor": "nonsense"}, 400, "invalid_entry"),
        (f"/v1/accounts/{buyer}/entries", {"from": "2026-01-01T00:00:00"}, 400, "invalid_request"),
        (f"/v1/accounts/{buyer}/balance", {"as_of": "yesterday"}, 400, "invalid_request"),
        ("/v1/holds", {"cursor": "!!"}, 400, "invalid_request"),
        ("/v1/holds", {"state": "frozen"}, 400, "invalid_request"),
        ("/v1/events", {"after": -1}, 400, "invalid_request"),
        ("/v1/reports", {"group_by": "planet"}, 400, "invalid_entry"),
        ("/v1/reports", {"month": "2026-13"}, 400, "invalid_entry"),
        ("/v1/reports", {"month": "2026-01", "from": "2026-01-01T00:00:00Z"}, 400, "usage_error"),
        ("/v1/reports", {"from": "soon"}, 400, "usage_error"),
        ("/v1/nowhere", {}, 404, "not_found"),
    ]
    for path, params, status, code in cases:
        got_status, body = _get(api, key, path, **params)
        assert (got_status, body["error"]["code"]) == (status, code), (path, params, body)
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert HTTP_STATUSES[code] == status
    with api.client(key) as client:
        response = client.post("/v1/events")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_the_status_table_covers_every_ledger_code() -> None:
    from ledger_db.api_keys import ApiKeyNotFound
    from ledger_db.errors import ERROR_CODES

    assert set(ERROR_CODES) | {ApiKeyNotFound.code} <= set(ERROR_STATUSES)
    assert HTTP_STATUSES["account_not_found"] == 404
    assert HTTP_STATUSES["unauthenticated"] == 401
    assert HTTP_STATUSES["insufficient_funds"] == 422
    assert HTTP_STATUSES["schema_outdated"] == 503
    assert all(100 <= status < 600 for status in HTTP_STATUSES.values())


def test_openapi_documents_every_endpoint(api: Api) -> None:
    status, document = _get(api, None, "/openapi.json")
    assert status == 200
    paths = document["paths"]
    assert set(paths) >= {
        "/v1/healthz",
        "/v1/accounts/{account_id}",
        "/v1/accounts/{account_id}/balance",
        "/v1/accounts/{account_id}/entries",
        "/v1/holds",
        "/v1/holds/{hold_id}",
        "/v1/transactions/{transaction_id}",
        "/v1/reports",
        "/v1/events",
    }
    balance = document["components"]["schemas"]["Balance"]["properties"]
    assert balance["posted"]["type"] == "string"
    assert not any(name.endswith("_minor") for name in balance)
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    with api.client(None) as client:
        assert client.get("/docs").status_code == 200


def test_browsers_of_the_configured_origins_may_call_it(ledger: Ledger) -> None:
    from dataclasses import replace

    from api_helpers import TEST_SETTINGS

    settings = replace(TEST_SETTINGS, cors_origins=("https://app.example",))
    with start_api(ledger, settings) as server, httpx.Client(base_url=server.url) as client:
        preflight = {
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        }
        allowed = client.options(
            "/v1/events", headers={"Origin": "https://app.example", **preflight}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = client.options(
            "/v1/events", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers
        # A real request still needs its key.
        refused = client.get("/v1/events", headers={"Origin": "https://app.example"})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
