"""Issue 7, through the public API on both engines: money is never rounded, bad text and bad
time are typed errors, meta is hashed as it is stored, IDs are per tenant, reversals and reads
are strict. Every refusal asserts its stable code, the field it names, and that nothing was
written (every row of every table, as in the bad-input suite).

Cases that share a ledger are looped inside one test per engine (a fresh database costs about a
second); a failure names the case.
"""

from __future__ import annotations

import decimal
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from ledger_data import sample_record as record

from ledger_db import Ledger, errors, limits
from ledger_db.ids import derive_entry_id, derive_transaction_id
from ledger_db.models import REVERSIBLE_KINDS, LedgerEntryInput, TransactionKind
from ledger_db.schema import journal_entries

Snapshot = Callable[[Ledger], Any]
TTL_SECONDS = 600


def new_key() -> str:
    return f"hard-{uuid.uuid4().hex}"


@dataclass
class World:
    """A tenant with money, a payee and a hold in each state, on a ledger with a manual clock."""

    ledger: Ledger
    clock: Any
    tenant_id: str
    buyer: str  # USD agent with 100.00 (before the holds below)
    seller: str  # USD agent
    active: str  # active hold of 10.00, payee seller
    captured: str  # captured 1.00, not paid out
    finalized: str  # captured 2.00 and paid out
    deposit_id: str  # a deposit transaction of 5.00


@pytest.fixture
def world(clocked_ledger: Ledger, clock: Any) -> World:
    ledger = clocked_ledger
    tenant = f"tenant-{uuid.uuid4().hex[:12]}"
    for account_id in ("buyer", "seller"):
        ledger.open_account(
            tenant_id=tenant, currency="USD", idempotency_key=new_key(), account_id=account_id
        )
    ledger.deposit("buyer", "100.00", tenant_id=tenant, idempotency_key=new_key())

    def freeze(amount: str) -> str:
        return ledger.freeze(
            "buyer",
            amount,
            "NEGOTIATION",
            tenant_id=tenant,
            idempotency_key=new_key(),
            ttl_seconds=TTL_SECONDS,
            payee_account_id="seller",
        ).hold_id

    active, captured, finalized = freeze("10.00"), freeze("1.00"), freeze("2.00")
    for hold in (captured, finalized):
        ledger.capture_hold(hold, f"order-{hold[:6]}", tenant_id=tenant, idempotency_key=new_key())
    ledger.finalize_hold(finalized, tenant_id=tenant, idempotency_key=new_key())
    deposit = ledger.deposit("buyer", "5.00", tenant_id=tenant, idempotency_key=new_key())
    return World(
        ledger,
        clock,
        tenant,
        "buyer",
        "seller",
        active,
        captured,
        finalized,
        deposit.transaction_id,
    )


def refusal(
    ledger: Ledger, snapshot: Snapshot, call: Callable[[], object], code: str
) -> errors.LedgerError:
    """Runs ``call``, which must raise ``code`` and write nothing; returns the error."""
    before = snapshot(ledger)
    with pytest.raises(errors.LedgerError) as caught:
        call()
    assert caught.value.code == code, caught.value
    assert snapshot(ledger) == before, "a refused call wrote something"
    return caught.value


def expect_refusals(
    ledger: Ledger,
    snapshot: Snapshot,
    cases: list[tuple[str, Callable[[], object], str, str | None]],
) -> None:
    """Each (name, call, code, field): refused with that code naming that field, nothing
    written. Every case runs; the failures are reported together."""
    failures: list[str] = []
    for name, call, code, field in cases:
        before = snapshot(ledger)
        try:
            call()
        except errors.LedgerError as error:
            if error.code != code or (field is not None and error.details.get("field") != field):
                failures.append(f"{name}: {error.code} field={error.details.get('field')!r}")
        except Exception as error:
            failures.append(f"{name}: raw {type(error).__name__}: {str(error)[:120]}")
        else:
            failures.append(f"{name}: accepted")
        if snapshot(ledger) != before:
            failures.append(f"{name}: wrote something")
    assert failures == []


# --- money --------------------------------------------------------------------------------

# Every spelling the one grammar refuses (DESIGN 2.1): extra precision, other digits, space,
# sign, bare points, exponents, underscores, junk, megabytes, and a huge exponent.
BAD_AMOUNTS: list[tuple[str, str]] = [
    ("too_precise", "0.99999999999999999999999999999"),
    ("full_width", "\uff11\uff12"),
    ("arabic_indic", "\u0661\u0662"),
    ("devanagari", "\u0967\u0968"),
    ("leading_space", " 1.00"),
    ("trailing_space", "1.00 "),
    ("plus", "+5"),
    ("minus", "-5"),
    ("bare_point_after", "1."),
    ("bare_point_before", ".5"),
    ("exponent", "1e1"),
    ("exponent_upper", "1E1"),
    ("underscore", "1_0"),
    ("empty", ""),
    ("nan", "NaN"),
    ("infinity", "Infinity"),
    ("hex", "0x1f"),
    ("comma", "1,50"),
    ("megabyte", "9" * 1_000_000),
    ("huge_exponent", "1e999999"),
]


def _amount_calls(w: World) -> dict[str, Callable[[object], object]]:
    ledger, t = w.ledger, w.tenant_id
    return {
        "deposit": lambda amount: ledger.deposit(
            w.buyer, amount, tenant_id=t, idempotency_key=new_key()
        ),
        "freeze": lambda amount: ledger.freeze(
            w.buyer, amount, "N", tenant_id=t, idempotency_key=new_key(), ttl_seconds=60
        ),
        "capture": lambda amount: ledger.capture_hold(
            w.active, "order-x", tenant_id=t, idempotency_key=new_key(), amount=amount
        ),
        "record": lambda amount: ledger.record_entries(
            [record(amount=amount)], tenant_id=t, idempotency_key=new_key()
        ),
        "open_account_overdraft": lambda amount: ledger.open_account(
            tenant_id=t, currency="USD", idempotency_key=new_key(), overdraft_limit=amount
        ),
        "set_overdraft_limit": lambda amount: ledger.set_overdraft_limit(
            w.buyer, amount, tenant_id=t, idempotency_key=new_key()
        ),
    }


@pytest.mark.parametrize(
    "operation",
    ["deposit", "freeze", "capture", "record", "open_account_overdraft", "set_overdraft_limit"],
)
def test_amounts_outside_the_grammar_are_refused(
    world: World, snapshot: Snapshot, operation: str
) -> None:
    call = _amount_calls(world)[operation]
    expect_refusals(
        world.ledger,
        snapshot,
        [
            (name, lambda text=text: call(text), "invalid_amount", None)
            for name, text in BAD_AMOUNTS
        ],
    )


@pytest.mark.parametrize("operation", ["deposit", "freeze", "capture", "record"])
def test_amounts_are_exact_whatever_the_host_decimal_context(
    world: World, snapshot: Snapshot, operation: str
) -> None:
    """A host program with ``prec = 6`` and every trap set: extra precision is still refused
    with ``invalid_amount`` (never rounded, never a raw ``decimal.Inexact``), and amounts of
    more than six digits are taken exactly."""
    call = _amount_calls(world)[operation]
    with decimal.localcontext() as context:
        context.prec = 6
        context.traps[decimal.Inexact] = True
        context.traps[decimal.Rounded] = True
        for text in ("0.99999999999999999999999999999", "1234.567", "0.001"):
            refusal(world.ledger, snapshot, lambda text=text: call(text), "invalid_amount")
        if operation == "capture":
            call("9.99")
            hold = world.ledger.get_hold(world.active, tenant_id=world.tenant_id)
            assert (hold.captured_minor, hold.released_minor) == (999, 1)
            return
        if operation == "freeze":
            world.ledger.deposit(
                world.buyer, "112345.66", tenant_id=world.tenant_id, idempotency_key=new_key()
            )
        # A LedgerEntryInput's amount is text; the other calls take a Decimal too.
        second: object = "12345.67" if operation == "record" else Decimal("12345.67")
        results = [call("99999.99"), call(second)]
    if operation == "freeze":
        assert [r.amount_minor for r in results] == [9_999_999, 1_234_567]
    else:
        amounts = [{e.amount_minor for e in r.entries} for r in results]
        assert amounts == [{9_999_999}, {1_234_567}]
    assert world.ledger.verify_journal() == []


# --- time ---------------------------------------------------------------------------------

YEAR_999 = datetime(999, 1, 1, tzinfo=UTC)
YEAR_1_PLUS_5 = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
LAST_DAY = datetime(9999, 12, 31, tzinfo=UTC)


def test_instants_outside_the_stored_range_are_refused(world: World, snapshot: Snapshot) -> None:
    """Year 999 (SQLite once wrote it as text it could not read back), an instant whose UTC
    conversion overflows (raw OverflowError before), naive instants, and a ``now`` beyond the
    range: each is ``invalid_entry`` naming its field, on both engines."""
    ledger, t = world.ledger, world.tenant_id

    def deposit(**kwargs: Any) -> Callable[[], object]:
        return lambda: ledger.deposit(
            world.buyer, "1.00", tenant_id=t, idempotency_key=new_key(), **kwargs
        )

    def records(at: object = None, now: object = None) -> Callable[[], object]:
        return lambda: ledger.record_entries(
            [record(occurred_at=at)], tenant_id=t, idempotency_key=new_key(), now=now
        )

    cases: list[tuple[str, Callable[[], object], str, str | None]] = [
        ("deposit_year_999", deposit(occurred_at=YEAR_999), "invalid_entry", "occurred_at"),
        (
            "deposit_year_1_plus_5",
            deposit(occurred_at=YEAR_1_PLUS_5),
            "invalid_entry",
            "occurred_at",
        ),
        (
            "deposit_naive",
            deposit(occurred_at=datetime(2025, 1, 1)),
            "invalid_entry",
            "occurred_at",
        ),
        (
            "deposit_1969",
            deposit(occurred_at=datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
            "invalid_entry",
            "occurred_at",
        ),
        (
            "deposit_text",
            deposit(occurred_at="2025-01-01T00:00:00Z"),
            "invalid_entry",
            "occurred_at",
        ),
        ("record_year_999", records(at=YEAR_999), "invalid_entry", "occurred_at"),
        ("record_year_1_plus_5", records(at=YEAR_1_PLUS_5), "invalid_entry", "occurred_at"),
        ("record_now_year_999", records(now=YEAR_999), "invalid_entry", "now"),
        (
            "reverse_now_year_999",
            lambda: ledger.reverse_transaction(
                world.deposit_id, tenant_id=t, idempotency_key=new_key(), now=YEAR_999
            ),
            "invalid_entry",
            "now",
        ),
        (
            "finalize_now_year_999",
            lambda: ledger.finalize_hold(
                world.captured, tenant_id=t, idempotency_key=new_key(), now=YEAR_999
            ),
            "invalid_entry",
            "now",
        ),
        (
            "freeze_now_last_day",
            lambda: ledger.freeze(
                world.buyer,
                "1.00",
                "N",
                tenant_id=t,
                idempotency_key=new_key(),
                ttl_seconds=60,
                now=LAST_DAY,
            ),
            "invalid_entry",
            "now",
        ),
        (
            "freeze_now_year_1_plus_5",
            lambda: ledger.freeze(
                world.buyer,
                "1.00",
                "N",
                tenant_id=t,
                idempotency_key=new_key(),
                ttl_seconds=60,
                now=YEAR_1_PLUS_5,
            ),
            "invalid_entry",
            "now",
        ),
        (
            "release_now_naive",
            lambda: ledger.release_hold(
                world.active, tenant_id=t, idempotency_key=new_key(), now=datetime(2025, 1, 1)
            ),
            "invalid_entry",
            "now",
        ),
        (
            "balance_as_of_year_1_plus_5",
            lambda: ledger.get_balance(world.buyer, tenant_id=t, as_of=YEAR_1_PLUS_5),
            "invalid_entry",
            "as_of",
        ),
        (
            "entries_from_year_1_plus_5",
            lambda: ledger.list_ledger_entries(world.buyer, YEAR_1_PLUS_5, tenant_id=t),
            "invalid_entry",
            "from_ts",
        ),
        (
            "entries_to_year_999",
            lambda: ledger.list_ledger_entries(world.buyer, None, YEAR_999, tenant_id=t),
            "invalid_entry",
            "to_ts",
        ),
        (
            "holds_expiring_before_year_1",
            lambda: ledger.list_holds(tenant_id=t, expires_before=YEAR_1_PLUS_5),
            "invalid_entry",
            "expires_before",
        ),
    ]
    expect_refusals(ledger, snapshot, cases)
    assert ledger.verify_journal() == []


def test_a_callers_now_lies_near_the_ledgers_clock(world: World, snapshot: Snapshot) -> None:
    """``capture_hold(now=now - 365 days)`` captured a hold that expired long ago; a ``now``
    more than ``now_lag_seconds_max`` behind or ``now_lead_seconds_max`` ahead of the ledger's
    clock is refused (``invalid_entry``, field ``now``), and the edges of the window are taken."""
    ledger, t, clock = world.ledger, world.tenant_id, world.clock
    clock.advance(seconds=TTL_SECONDS + 1)  # the active hold has expired
    refusal(
        ledger,
        snapshot,
        lambda: ledger.capture_hold(
            world.active,
            "o",
            tenant_id=t,
            idempotency_key=new_key(),
            now=clock() - timedelta(days=365),
        ),
        "invalid_entry",
    )
    # Today's clock says the hold expired.
    refusal(
        ledger,
        snapshot,
        lambda: ledger.capture_hold(world.active, "o", tenant_id=t, idempotency_key=new_key()),
        "hold_expired",
    )
    lag, lead = limits.now_lag_seconds_max, limits.now_lead_seconds_max
    error = refusal(
        ledger,
        snapshot,
        lambda: ledger.capture_hold(
            world.active,
            "o",
            tenant_id=t,
            idempotency_key=new_key(),
            now=clock() - timedelta(seconds=lag + 1),
        ),
        "invalid_entry",
    )
    assert error.details["field"] == "now"
    error = refusal(
        ledger,
        snapshot,
        lambda: ledger.expire_hold(
            world.active,
            tenant_id=t,
            idempotency_key=new_key(),
            now=clock() + timedelta(seconds=lead + 1),
        ),
        "invalid_entry",
    )
    assert error.details["field"] == "now"
    # Within the window: a capture 2 seconds after the expiry, told it is 2 seconds before it
    # (a caller a little behind), is taken; so is a freeze dated at the far edge of the lead.
    captured = ledger.capture_hold(
        world.active,
        "o",
        tenant_id=t,
        idempotency_key=new_key(),
        now=clock() - timedelta(seconds=2),
    )
    assert captured.state == "captured"
    ahead = ledger.freeze(
        world.buyer,
        "1.00",
        "N",
        tenant_id=t,
        idempotency_key=new_key(),
        ttl_seconds=60,
        now=clock() + timedelta(seconds=lead),
    )
    assert ahead.expires_at == clock() + timedelta(seconds=lead + 60)
    assert ledger.verify_journal() == []


def test_a_replay_answers_whatever_now_the_retry_carries(world: World) -> None:
    """The window applies when an operation is applied; a retry of an applied request is a
    replay (it decides nothing), however late it comes."""
    ledger, t, clock = world.ledger, world.tenant_id, world.clock
    key, at = new_key(), clock()
    first = ledger.release_hold(world.active, tenant_id=t, idempotency_key=key, now=at)
    clock.advance(days=2)
    again = ledger.release_hold(world.active, tenant_id=t, idempotency_key=key, now=at)
    assert again.replayed and again.resolve_transaction_id == first.resolve_transaction_id


def test_a_computed_expiry_beyond_the_range_is_refused(
    database_url: str, snapshot: Snapshot
) -> None:
    """``expires_at = now + ttl`` past 9999-12-31 is ``invalid_entry`` naming ``expires_at``
    (a raw OverflowError before); the ledger otherwise works at the end of the range."""
    late = datetime(9999, 12, 31, 22, 0, tzinfo=UTC)
    ledger = Ledger.from_url(database_url, clock=lambda: late)
    try:
        tenant = "tenant-late"
        ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="o", account_id="a")
        ledger.deposit("a", "5.00", tenant_id=tenant, idempotency_key="d")
        error = refusal(
            ledger,
            snapshot,
            lambda: ledger.freeze(
                "a", "1.00", "N", tenant_id=tenant, idempotency_key="f", ttl_seconds=3 * 3600
            ),
            "invalid_entry",
        )
        assert error.details["field"] == "expires_at"
        hold = ledger.freeze(
            "a", "1.00", "N", tenant_id=tenant, idempotency_key="g", ttl_seconds=60
        )
        assert hold.expires_at == late + timedelta(seconds=60)
        assert ledger.verify_journal() == []
    finally:
        ledger.close()


def test_the_edges_of_the_range_round_trip(tools: Any) -> None:
    """The first and last storable instants are written and read back exactly (SQLite keeps a
    fixed-width text of 27 characters), and the journal verifies."""
    account = tools.agent(balance="10.00")
    first = limits.instant_min
    last = limits.instant_max
    for at in (
        first,
        last,
        datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=-7))),
    ):
        tools.ledger.deposit(
            account, "1.00", tenant_id=tools.tenant_id, idempotency_key=tools.key(), occurred_at=at
        )
    entries = tools.ledger.list_ledger_entries(account, tenant_id=tools.tenant_id).entries
    stamps = [entry.occurred_at for entry in entries][-3:]
    assert stamps == [first, last, datetime(2024, 2, 29, 19, 0, 0, 1, tzinfo=UTC)]
    if tools.ledger.engine.dialect.name == "sqlite":
        with tools.ledger.engine.connect() as connection:
            texts = set(
                connection.execute(
                    sa.select(journal_entries.c.occurred_at.cast(sa.String)).where(
                        journal_entries.c.tenant_id == tools.tenant_id
                    )
                ).scalars()
            )
        assert "1970-01-01T00:00:00.000000Z" in texts
        assert "9999-12-31T23:59:59.999999Z" in texts
        assert {len(text) for text in texts} == {27}
    assert tools.ledger.verify_journal() == []


# --- text ---------------------------------------------------------------------------------

NUL, SURROGATE, CONTROL = "a\x00b", "a\udc80b", "a\x01b"


def test_bad_text_is_a_typed_error_naming_its_field(world: World, snapshot: Snapshot) -> None:
    """NUL (raw psycopg.DataError on PostgreSQL, stored on SQLite), lone surrogates (raw
    UnicodeEncodeError on both), control characters and newlines in IDs, and an ``env`` longer
    than its 64-character column (raw StringDataRightTruncation): ``invalid_entry`` naming the
    field, everywhere text enters, the same on both engines."""
    ledger, t = world.ledger, world.tenant_id

    def deposit(**kwargs: Any) -> Callable[[], object]:
        options = {"tenant_id": t, "idempotency_key": new_key(), **kwargs}
        account = options.pop("account", world.buyer)
        return lambda: ledger.deposit(account, "1.00", **options)

    def freeze(**kwargs: Any) -> Callable[[], object]:
        options = {"tenant_id": t, "idempotency_key": new_key(), "ttl_seconds": 60, **kwargs}
        reason = options.pop("reason", "N")
        return lambda: ledger.freeze(world.buyer, "1.00", reason, **options)

    def records(**overrides: Any) -> Callable[[], object]:
        return lambda: ledger.record_entries(
            [record(**overrides)], tenant_id=t, idempotency_key=new_key()
        )

    def typed(**overrides: Any) -> Callable[[], object]:
        """The same through LedgerEntryInput (what the client and the import build)."""
        entry = LedgerEntryInput.model_validate(record(**overrides))
        return lambda: ledger.record_entries([entry], tenant_id=t, idempotency_key=new_key())

    def capture(order_id: str) -> Callable[[], object]:
        return lambda: ledger.capture_hold(
            world.active, order_id, tenant_id=t, idempotency_key=new_key()
        )

    invalid = "invalid_entry"
    cases: list[tuple[str, Callable[[], object], str, str | None]] = [
        ("tenant_newline", deposit(tenant_id="acme\n"), invalid, "tenant_id"),
        ("tenant_nul", deposit(tenant_id="acme\x00"), invalid, "tenant_id"),
        ("account_newline", deposit(account="buyer\n"), invalid, "account_id"),
        ("account_system_nul", deposit(account="@hold:buyer\x00"), invalid, "account_id"),
        ("key_nul", deposit(idempotency_key="k\x00"), "idempotency_key_invalid", None),
        ("key_surrogate", deposit(idempotency_key="k\udc80"), "idempotency_key_invalid", None),
        ("key_newline", deposit(idempotency_key="k\n"), "idempotency_key_invalid", None),
        ("deposit_external_ref_nul", deposit(external_ref=NUL), invalid, "external_ref"),
        (
            "deposit_external_ref_surrogate",
            deposit(external_ref=SURROGATE),
            invalid,
            "external_ref",
        ),
        ("deposit_external_ref_control", deposit(external_ref=CONTROL), invalid, "external_ref"),
        ("deposit_reason_nul", deposit(reason=NUL), invalid, "reason"),
        ("deposit_reason_surrogate", deposit(reason=SURROGATE), invalid, "reason"),
        ("deposit_category_nul", deposit(category=NUL), invalid, "category"),
        ("deposit_env_nul", deposit(env=NUL), invalid, "env"),
        ("deposit_env_65", deposit(env="e" * 65), invalid, "env"),
        ("deposit_env_255", deposit(env="e" * 255), invalid, "env"),
        ("deposit_project_control", deposit(project_id=CONTROL), invalid, "project_id"),
        ("deposit_meta_key_nul", deposit(meta={"k\x00": 1}), invalid, "meta"),
        ("deposit_meta_value_nul", deposit(meta={"k": NUL}), invalid, "meta"),
        ("deposit_meta_key_surrogate", deposit(meta={"k\udc80": 1}), invalid, "meta"),
        ("deposit_meta_nested_surrogate", deposit(meta={"a": [{"b": SURROGATE}]}), invalid, "meta"),
        (
            "deposit_meta_too_deep",
            deposit(meta=_nested(limits.meta_depth_max + 1)),
            invalid,
            "meta",
        ),
        ("freeze_reason_nul", freeze(reason=NUL), invalid, "reason"),
        ("freeze_hold_id_nul", freeze(hold_id=NUL), invalid, "hold_id"),
        ("freeze_hold_id_control", freeze(hold_id=CONTROL), invalid, "hold_id"),
        ("freeze_project_nul", freeze(project_id=NUL), invalid, "project_id"),
        ("freeze_task_surrogate", freeze(task_id=SURROGATE), invalid, "task_id"),
        ("freeze_env_65", freeze(env="e" * 65), invalid, "env"),
        ("freeze_meta_nul", freeze(meta={"note": NUL}), invalid, "meta"),
        ("freeze_payee_newline", freeze(payee_account_id="seller\n"), invalid, "payee_account_id"),
        ("capture_order_nul", capture(NUL), invalid, "order_id"),
        ("capture_order_control", capture(CONTROL), invalid, "order_id"),
        ("capture_order_surrogate", capture(SURROGATE), invalid, "order_id"),
        ("record_reason_nul", records(reason=NUL), invalid, "reason"),
        ("record_category_surrogate", records(category=SURROGATE), invalid, "category"),
        ("record_env_65", records(env="e" * 65), invalid, "env"),
        ("record_asset_control", records(asset_id=CONTROL), invalid, "asset_id"),
        ("record_task_nul", records(task_id=NUL), invalid, "task_id"),
        ("record_external_ref_surrogate", records(external_ref=SURROGATE), invalid, "external_ref"),
        ("record_project_nul", records(project_id=NUL), invalid, "project_id"),
        ("record_tag_nul", records(tags=["ok", NUL]), invalid, "tags"),
        ("record_tag_newline", records(tags=["a\n"]), invalid, "tags"),
        ("record_meta_key_nul", records(meta={"k\x00": "v"}), invalid, "meta"),
        ("record_meta_value_surrogate", records(meta={"k": [SURROGATE]}), invalid, "meta"),
        ("record_entry_id_nul", records(ledger_entry_id="x\x00"), invalid, "ledger_entry_id"),
        ("record_tenant_dot", records(tenant_id="bad.tenant"), invalid, "tenant_id"),
        ("typed_reason_nul", typed(reason=NUL), invalid, "reason"),
        ("typed_env_65", typed(env="e" * 65), invalid, "env"),
        ("typed_meta_nul", typed(meta={"k": NUL}), invalid, "meta"),
        (
            "open_name_nul",
            lambda: ledger.open_account(
                tenant_id=t, currency="USD", idempotency_key=new_key(), name=NUL
            ),
            invalid,
            "name",
        ),
        (
            "open_name_surrogate",
            lambda: ledger.open_account(
                tenant_id=t, currency="USD", idempotency_key=new_key(), name=SURROGATE
            ),
            invalid,
            "name",
        ),
        (
            "open_account_newline",
            lambda: ledger.open_account(
                tenant_id=t, currency="USD", idempotency_key=new_key(), account_id="agent\n"
            ),
            invalid,
            "account_id",
        ),
        (
            "reverse_reason_nul",
            lambda: ledger.reverse_transaction(
                world.deposit_id, tenant_id=t, idempotency_key=new_key(), reason=NUL
            ),
            invalid,
            "reason",
        ),
        (
            "reverse_transaction_control",
            lambda: ledger.reverse_transaction(CONTROL, tenant_id=t, idempotency_key=new_key()),
            invalid,
            "transaction_id",
        ),
        (
            "get_hold_nul",
            lambda: ledger.get_hold(NUL, tenant_id=t),
            invalid,
            "hold_id",
        ),
        (
            "events_hold_nul",
            lambda: ledger.list_events(tenant_id=t, hold_id=NUL),
            invalid,
            "hold_id",
        ),
    ]
    expect_refusals(ledger, snapshot, cases)
    assert ledger.verify_journal() == []


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


def test_text_that_is_fine_is_kept_exactly(tools: Any) -> None:
    """Free text keeps tabs and newlines, IDs keep any printable Unicode, ``env`` takes its
    whole 64 characters."""
    account = tools.agent(balance="10.00")
    result = tools.ledger.deposit(
        account,
        "1.00",
        tenant_id=tools.tenant_id,
        idempotency_key=tools.key(),
        reason="line one\n\tline two",
        external_ref="ref-\u00e9\u4e2d\U0001f600",
        env="e" * 64,
        meta={"note": "multi\nline", "emoji": "\U0001f600"},
    )
    entry = next(e for e in result.entries if e.account_id == account)
    stored = tools.ledger.list_ledger_entries(account, tenant_id=tools.tenant_id).entries[-1]
    assert stored == entry
    assert (stored.reason, stored.external_ref, stored.env) == (
        "line one\n\tline two",
        "ref-\u00e9\u4e2d\U0001f600",
        "e" * 64,
    )
    assert tools.ledger.verify_journal() == []


# --- meta: hash what is stored --------------------------------------------------------------

META_IN = {
    "n": 1e16,
    "z": -0.0,
    "big": 1.5e300,
    "whole": 2.0,
    "fee_amount": 3.5,
    "small": 1.5e-7,
    "third": 1 / 3,
    "int": 10**30,
    "neg": -7,
    "flag": True,
    "none": None,
    "nested": {"list": [1e22, 0.1, "x"], "deep": {"k": -2.5e-300}},
}
# What PostgreSQL's jsonb hands back for META_IN, and what both engines now store and hash.
META_STORED = {
    "n": 10**16,
    "z": 0,
    "big": 15 * 10**299,
    "whole": 2,
    "fee_amount": 3.5,
    "small": 1.5e-7,
    "third": 1 / 3,
    "int": 10**30,
    "neg": -7,
    "flag": True,
    "none": None,
    "nested": {"list": [10**22, 0.1, "x"], "deep": {"k": -2.5e-300}},
}


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value).__name__


def test_meta_numbers_are_stored_and_hashed_as_jsonb_returns_them(tools: Any) -> None:
    """``{"n": 1e16}``, ``-0.0`` and ``1.5e300`` came back from jsonb changed (ints), so an
    untouched journal reported ``hash_mismatch`` forever. Meta is now normalised before it is
    hashed and stored, the same on both engines: integral numbers are ints, others floats (3.5
    stays 3.5, as in the schema's own example)."""
    account = tools.agent(balance="10.00")
    ledger, t = tools.ledger, tools.tenant_id
    key = tools.key()
    deposit = ledger.deposit(account, "1.00", tenant_id=t, idempotency_key=key, meta=META_IN)
    recorded = ledger.record_entries(
        [record(meta=META_IN)], tenant_id=t, idempotency_key=tools.key()
    )
    hold = ledger.freeze(
        account, "1.00", "N", tenant_id=t, idempotency_key=tools.key(), ttl_seconds=60, meta=META_IN
    )
    for result in (deposit, recorded):
        assert {json.dumps(e.meta, sort_keys=True) for e in result.entries} == {
            json.dumps(META_STORED, sort_keys=True)
        }
    stored = ledger.list_ledger_entries(account, tenant_id=t).entries
    deposited = next(e for e in stored if e.transaction_id == deposit.transaction_id)
    assert deposited.meta == META_STORED
    assert _types(deposited.meta) == _types(META_STORED)
    assert {
        k: v for k, v in ledger.get_hold(hold.hold_id, tenant_id=t).meta.items() if k in META_IN
    } == META_STORED
    if ledger.engine.dialect.name == "postgresql":
        with ledger.engine.connect() as connection:
            text = connection.execute(
                sa.text(
                    "SELECT meta::text FROM journal_entries "
                    "WHERE transaction_id = :id AND entry_index = 0"
                ),
                {"id": deposit.transaction_id},
            ).scalar_one()
        assert json.loads(text) == META_STORED
    assert ledger.verify_journal() == []
    again = ledger.deposit(account, "1.00", tenant_id=t, idempotency_key=key, meta=META_IN)
    assert again.replayed
    normalised = ledger.deposit(account, "1.00", tenant_id=t, idempotency_key=key, meta=META_STORED)
    assert normalised.replayed  # the same request once normalised


def test_meta_that_is_not_plain_json_is_refused(world: World, snapshot: Snapshot) -> None:
    ledger, t = world.ledger, world.tenant_id

    def deposit(meta: Any) -> Callable[[], object]:
        return lambda: ledger.deposit(
            world.buyer, "1.00", tenant_id=t, idempotency_key=new_key(), meta=meta
        )

    cases: list[tuple[str, Callable[[], object], str, str | None]] = [
        ("nan", deposit({"x": float("nan")}), "invalid_entry", "meta"),
        ("infinity", deposit({"x": float("inf")}), "invalid_entry", "meta"),
        ("decimal", deposit({"x": Decimal("1.5")}), "invalid_entry", "meta"),
        ("set", deposit({"x": {1, 2}}), "invalid_entry", "meta"),
        ("not_a_mapping", deposit(["x"]), "invalid_entry", "meta"),
        ("mixed_keys", deposit({1: "a", "b": 2}), "invalid_entry", "meta"),
        ("huge_int", deposit({"x": 10**5000}), "invalid_entry", "meta"),
    ]
    expect_refusals(ledger, snapshot, cases)


# --- IDs ------------------------------------------------------------------------------------


def test_ledger_entry_ids_are_unique_per_tenant(tools_for: Any, snapshot: Snapshot) -> None:
    """Tenant A's IDs neither block nor reveal tenant B's: B may use the same ID; within one
    tenant an ID is used once (``invalid_entry``, field ``ledger_entry_id``)."""
    a = tools_for(f"tenant-{uuid.uuid4().hex[:12]}")
    b = tools_for(f"tenant-{uuid.uuid4().hex[:12]}")
    entry_id = str(uuid.uuid4())
    a.ledger.record_entries(
        [record(ledger_entry_id=entry_id)], tenant_id=a.tenant_id, idempotency_key=a.key()
    )
    result = b.ledger.record_entries(
        [record(ledger_entry_id=entry_id)], tenant_id=b.tenant_id, idempotency_key=b.key()
    )
    assert entry_id in {e.ledger_entry_id for e in result.entries}
    error = refusal(
        b.ledger,
        snapshot,
        lambda: b.ledger.record_entries(
            [record(ledger_entry_id=entry_id)], tenant_id=b.tenant_id, idempotency_key=b.key()
        ),
        "invalid_entry",
    )
    assert error.details["field"] == "ledger_entry_id"
    assert a.ledger.verify_journal() == []


def test_another_tenants_entry_ids_cannot_block_a_deposit(tools_for: Any) -> None:
    """Tenant A records entries whose IDs tenant B's next deposit derives: B's deposit still
    succeeds at once (it failed forever with a raw IntegrityError after seconds of retries)."""
    a = tools_for(f"tenant-{uuid.uuid4().hex[:12]}")
    b = tools_for(f"tenant-{uuid.uuid4().hex[:12]}")
    account = b.agent()
    key = b.key()
    transaction_id = derive_transaction_id(b.tenant_id, key, "deposit")
    taken = [derive_entry_id(transaction_id, index) for index in (0, 1)]
    a.ledger.record_entries(
        [record(ledger_entry_id=entry_id) for entry_id in taken],
        tenant_id=a.tenant_id,
        idempotency_key=a.key(),
    )
    result = b.ledger.deposit(account, "1.00", tenant_id=b.tenant_id, idempotency_key=key)
    assert sorted(e.ledger_entry_id for e in result.entries) == sorted(taken)
    assert a.ledger.verify_journal() == []


def test_a_derived_id_taken_already_is_a_typed_error_at_once(
    tools: Any, snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within one tenant, a recorded ID equal to one a deposit derives makes that deposit
    ``invalid_entry`` (field ``ledger_entry_id``) on the first attempt: a unique violation is
    never retried as if it were transient."""
    import ledger_db.ledger as ledger_module

    sleeps: list[float] = []
    monkeypatch.setattr(ledger_module.time, "sleep", sleeps.append)
    account = tools.agent()
    key = tools.key()
    transaction_id = derive_transaction_id(tools.tenant_id, key, "deposit")
    tools.ledger.record_entries(
        [record(ledger_entry_id=derive_entry_id(transaction_id, 1))],
        tenant_id=tools.tenant_id,
        idempotency_key=tools.key(),
    )
    error = refusal(
        tools.ledger,
        snapshot,
        lambda: tools.ledger.deposit(
            account, "1.00", tenant_id=tools.tenant_id, idempotency_key=key
        ),
        "invalid_entry",
    )
    assert error.details["field"] == "ledger_entry_id"
    assert sleeps == []


# --- reversals ------------------------------------------------------------------------------


def test_only_the_reversible_kinds_are_reversed(world: World, snapshot: Snapshot) -> None:
    """``REVERSIBLE_KINDS`` is deposit and record. A finalize (it would strand the payout in
    escrow), hold movements, reversals and control transactions are refused."""
    ledger, t = world.ledger, world.tenant_id
    assert {TransactionKind.DEPOSIT, TransactionKind.RECORD} == REVERSIBLE_KINDS
    ledger.release_hold(world.active, tenant_id=t, idempotency_key=new_key())
    ledger.set_overdraft_limit(world.buyer, "1.00", tenant_id=t, idempotency_key=new_key())
    reversal = ledger.reverse_transaction(world.deposit_id, tenant_id=t, idempotency_key=new_key())
    transactions = ledger.list_transactions(tenant_id=t, limit=1000)
    kinds = {transaction.kind for transaction in transactions}
    assert kinds == set(TransactionKind) - {TransactionKind.EXPIRE, TransactionKind.RECORD}
    cases: list[tuple[str, Callable[[], object], str, str | None]] = [
        (
            f"{transaction.kind.value}@{transaction.journal_sequence}",
            lambda transaction=transaction: ledger.reverse_transaction(
                transaction.transaction_id, tenant_id=t, idempotency_key=new_key()
            ),
            "invalid_entry",
            "transaction_id",
        )
        for transaction in transactions
        if transaction.kind not in REVERSIBLE_KINDS
    ]
    assert any(name.startswith("finalize") for name, *_ in cases)
    expect_refusals(ledger, snapshot, cases)
    refusal(
        ledger,
        snapshot,
        lambda: ledger.reverse_transaction(
            world.deposit_id, tenant_id=t, idempotency_key=new_key()
        ),
        "transaction_already_reversed",
    )
    assert reversal.reverses_transaction_id == world.deposit_id
    assert ledger.verify_journal() == []


# --- reads and malformed arguments ----------------------------------------------------------


def test_every_read_is_scoped_to_a_tenant(world: World, tools_for: Any) -> None:
    """``list_holds()`` and ``list_events()`` listed every tenant's rows when no tenant was
    given; the tenant is now required (None is ``invalid_entry``). The outbox relay reads every
    tenant's unsent events through its own, clearly named method."""
    ledger = world.ledger
    other = tools_for(f"tenant-{uuid.uuid4().hex[:12]}")
    other_account = other.agent(balance="5.00")
    ledger.freeze(
        other_account,
        "1.00",
        "N",
        tenant_id=other.tenant_id,
        idempotency_key=new_key(),
        ttl_seconds=60,
    )
    for call, field in (
        (lambda: ledger.list_holds(tenant_id=None), "tenant_id"),
        (lambda: ledger.list_events(tenant_id=None), "tenant_id"),
        (lambda: ledger.list_transactions(tenant_id=None), "tenant_id"),
        (lambda: ledger.list_accounts(tenant_id=None), "tenant_id"),
    ):
        with pytest.raises(errors.InvalidEntry) as caught:
            call()
        assert caught.value.details["field"] == field
    assert {hold.tenant_id for hold in ledger.list_holds(tenant_id=world.tenant_id)} == {
        world.tenant_id
    }
    assert {event.tenant_id for event in ledger.list_events(tenant_id=other.tenant_id)} == {
        other.tenant_id
    }
    unsent = ledger.list_unsent_events_all_tenants(limit=1000)
    assert {world.tenant_id, other.tenant_id} <= {event.tenant_id for event in unsent}
    assert all(event.sent_at is None for event in unsent)


def test_malformed_arguments_are_typed_errors(world: World, snapshot: Snapshot) -> None:
    """Wrong types and out-of-range values raised raw TypeError, ValueError, AttributeError or
    the driver's ProgrammingError/DataError; each is now a typed error naming its field."""
    ledger, t, buyer = world.ledger, world.tenant_id, world.buyer
    huge = "1" * 30

    def key() -> str:
        return new_key()

    # (name, call taking the bad value, the bad values, the field named); code invalid_entry.
    groups: list[tuple[str, Callable[[Any], object], list[Any], str]] = [
        (
            "record",
            lambda v: ledger.record_entries(v, tenant_id=t, idempotency_key=key()),
            [None, "abc", [None], [1]],
            "entries",
        ),
        (
            "record_many",
            lambda v: ledger.record_entries_many(v, tenant_id=t, idempotency_key=key()),
            [None, [None]],
            "entries",
        ),
        (
            "record_amount",
            lambda v: ledger.record_entries([record(amount=v)], tenant_id=t, idempotency_key=key()),
            [1],
            "amount",
        ),
        (
            "record_direction",
            lambda v: ledger.record_entries(
                [record(direction=v)], tenant_id=t, idempotency_key=key()
            ),
            ["SIDEWAYS"],
            "direction",
        ),
        (
            "record_constructed",
            lambda v: ledger.record_entries(
                [LedgerEntryInput.model_construct(**record(amount=v))],
                tenant_id=t,
                idempotency_key=key(),
            ),
            [5],
            "amount",
        ),
        (
            "open_account_id",
            lambda v: ledger.open_account(
                tenant_id=t, currency="USD", idempotency_key=key(), account_id=v
            ),
            [123],
            "account_id",
        ),
        (
            "open_kind",
            lambda v: ledger.open_account(
                tenant_id=t, currency="USD", idempotency_key=key(), kind=v
            ),
            [5, []],
            "kind",
        ),
        (
            "open_name",
            lambda v: ledger.open_account(
                tenant_id=t, currency="USD", idempotency_key=key(), name=v
            ),
            [5],
            "name",
        ),
        ("holds_state", lambda v: ledger.list_holds(tenant_id=t, state=v), ["bogus", []], "state"),
        ("holds_limit", lambda v: ledger.list_holds(tenant_id=t, limit=v), ["5", True, 0], "limit"),
        (
            "holds_account",
            lambda v: ledger.list_holds(tenant_id=t, account_id=v),
            [5],
            "account_id",
        ),
        (
            "events_after",
            lambda v: ledger.list_events(tenant_id=t, after_sequence=v),
            [None, "3", -1, 10**30],
            "after_sequence",
        ),
        (
            "events_unsent",
            lambda v: ledger.list_events(tenant_id=t, unsent_only=v),
            ["yes"],
            "unsent_only",
        ),
        (
            "relay_after",
            lambda v: ledger.list_unsent_events_all_tenants(after_sequence=v),
            [10**30],
            "after_sequence",
        ),
        (
            "transactions_after",
            lambda v: ledger.list_transactions(tenant_id=t, after_sequence=v),
            [10**30, None],
            "after_sequence",
        ),
        (
            "entries_cursor",
            lambda v: ledger.list_ledger_entries(buyer, tenant_id=t, cursor=v),
            [f"{huge}.0", 5, "\u0661.\u0662"],
            "cursor",
        ),
        (
            "entries_time_field",
            lambda v: ledger.list_ledger_entries(buyer, tenant_id=t, time_field=v),
            ["sent_at"],
            "time_field",
        ),
        (
            "entries_from",
            lambda v: ledger.list_ledger_entries(buyer, v, tenant_id=t),
            ["2025-01-01"],
            "from_ts",
        ),
        (
            "balance_as_of",
            lambda v: ledger.get_balance(buyer, tenant_id=t, as_of=v),
            ["2025"],
            "as_of",
        ),
        ("balance_account", lambda v: ledger.get_balance(v, tenant_id=t), [5], "account_id"),
        (
            "accounts_internal",
            lambda v: ledger.list_accounts(tenant_id=t, include_internal=v),
            ["yes"],
            "include_internal",
        ),
        ("transaction_id", lambda v: ledger.get_transaction(v, tenant_id=t), [5], "transaction_id"),
        (
            "deposit_account",
            lambda v: ledger.deposit(v, "1.00", tenant_id=t, idempotency_key=key()),
            [123],
            "account_id",
        ),
        (
            "deposit_meta",
            lambda v: ledger.deposit(buyer, "1.00", tenant_id=t, idempotency_key=key(), meta=v),
            ["x"],
            "meta",
        ),
        (
            "deposit_reason",
            lambda v: ledger.deposit(buyer, "1.00", tenant_id=t, idempotency_key=key(), reason=v),
            [5],
            "reason",
        ),
        (
            "freeze_reason",
            lambda v: ledger.freeze(
                buyer, "1.00", v, tenant_id=t, idempotency_key=key(), ttl_seconds=60
            ),
            [None],
            "reason",
        ),
        (
            "freeze_hold_id",
            lambda v: ledger.freeze(
                buyer, "1.00", "N", tenant_id=t, idempotency_key=key(), ttl_seconds=60, hold_id=v
            ),
            [5],
            "hold_id",
        ),
        (
            "capture_hold",
            lambda v: ledger.capture_hold(v, "o", tenant_id=t, idempotency_key=key()),
            [None],
            "hold_id",
        ),
        (
            "capture_order",
            lambda v: ledger.capture_hold(world.active, v, tenant_id=t, idempotency_key=key()),
            [5],
            "order_id",
        ),
        (
            "finalize_bps",
            lambda v: ledger.finalize_hold(
                world.captured, tenant_id=t, idempotency_key=key(), fee_bps=v
            ),
            ["1"],
            "fee_bps",
        ),
        (
            "reverse_id",
            lambda v: ledger.reverse_transaction(v, tenant_id=t, idempotency_key=key()),
            [5],
            "transaction_id",
        ),
        ("mark_sent_ids", lambda v: ledger.mark_events_sent(v), ["abc", [1, 2]], "event_ids"),
        (
            "mark_sent_at",
            lambda v: ledger.mark_events_sent(["x"], sent_at=v),
            [YEAR_1_PLUS_5],
            "sent_at",
        ),
        (
            "overdraft_account",
            lambda v: ledger.set_overdraft_limit(v, "1.00", tenant_id=t, idempotency_key=key()),
            [5, "@escrow:USD"],
            "account_id",
        ),
    ]
    cases: list[tuple[str, Callable[[], object], str, str | None]] = [
        (
            f"{name}={value!r:.20}",
            lambda call=call, value=value: call(value),
            "invalid_entry",
            field,
        )
        for name, call, values, field in groups
        for value in values
    ]
    cases += [
        (
            "open_none_currency",
            lambda: ledger.open_account(tenant_id=t, currency=None, idempotency_key=key()),
            "unknown_currency",
            None,
        ),
        (
            "deposit_int_key",
            lambda: ledger.deposit(buyer, "1.00", tenant_id=t, idempotency_key=5),
            "idempotency_key_invalid",
            None,
        ),
        (
            "freeze_text_ttl",
            lambda: ledger.freeze(
                buyer, "1.00", "N", tenant_id=t, idempotency_key=key(), ttl_seconds="60"
            ),
            "ttl_out_of_range",
            None,
        ),
    ]
    expect_refusals(ledger, snapshot, cases)
    # Above the page size maximum is the maximum, as before.
    assert len(ledger.list_holds(tenant_id=t, limit=10**6)) == 3


# --- overdraft limits change through the journal ---------------------------------------------


def test_overdraft_limits_change_only_through_a_journaled_operation(tools: Any) -> None:
    account = tools.agent(balance="1.00")
    key = tools.key()
    changed = tools.ledger.set_overdraft_limit(
        account, "5.00", tenant_id=tools.tenant_id, idempotency_key=key
    )
    assert (changed.overdraft_limit_minor, changed.replayed) == (500, False)
    again = tools.ledger.set_overdraft_limit(
        account, "5.00", tenant_id=tools.tenant_id, idempotency_key=key
    )
    assert again.replayed and again.overdraft_limit_minor == 500
    with pytest.raises(errors.IdempotencyKeyReused):
        tools.ledger.set_overdraft_limit(
            account, "6.00", tenant_id=tools.tenant_id, idempotency_key=key
        )
    # The new limit is what the ledger enforces: 1.00 own + 5.00 overdraft.
    tools.ledger.freeze(
        account, "6.00", "N", tenant_id=tools.tenant_id, idempotency_key=tools.key(), ttl_seconds=60
    )
    with pytest.raises(errors.InsufficientFunds):
        tools.ledger.freeze(
            account,
            "0.01",
            "N",
            tenant_id=tools.tenant_id,
            idempotency_key=tools.key(),
            ttl_seconds=60,
        )
    changes = [
        transaction
        for transaction in tools.ledger.list_transactions(tenant_id=tools.tenant_id, limit=1000)
        if transaction.kind is TransactionKind.ACCOUNT_CHANGE
    ]
    assert len(changes) == 1 and changes[0].entries == []
    assert tools.ledger.verify_journal() == []
