"""The contract book's vectorized arithmetic against direct month-by-month sums, its cached index of active
contracts, the in-order matching of spot buyers to sellers, and the lab table's revenue history."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abm.labtable import LabTable
from abm.ledger import ContractBook
from abm.markets.spot import match_in_order

contract = st.tuples(st.integers(0, 30), st.integers(1, 40), st.integers(0, 12),
                     st.floats(1.0, 1e6), st.floats(1.0, 1e4))


def _book(contracts) -> ContractBook:
    book = ContractBook(capacity=2)
    for start, term, ramp, vol, price in contracts:
        book.add(buyer=1, seller=2, kind="reserved", volume=vol, start=start, end=start + term, price=price,
                 signed=start, ramp=ramp)
    return book


def _remaining_by_months(book: ContractBook, t: int, r: int) -> float:
    """Month-by-month sum of what is still owed on contract ``r`` from month ``t`` on."""
    s, e, v, ramp, p = (book.cols[k][r] for k in ("start", "end", "volume", "ramp", "price"))
    months = range(max(t, s), e)
    if not months:
        return 0.0
    if ramp == 0:
        return sum(v * p for _ in months)
    return sum(v * min(1.0, (m - s + 1) / ramp) for m in months) * p


@settings(max_examples=60, deadline=None)
@given(st.lists(contract, min_size=1, max_size=12), st.integers(0, 80))
def test_remaining_value_matches_month_by_month_sum(contracts, t):
    book = _book(contracts)
    rows = np.arange(len(book))
    got = book.remaining_value(t, rows)
    want = [_remaining_by_months(book, t, r) for r in rows]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-9)
    # The cached columns of the active index give the same answer as explicit rows.
    active = book.active_capacity_rows()
    assert book.remaining_value(t, active) == pytest.approx(book.remaining_value(t, active.copy()), rel=0, abs=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(contract, min_size=1, max_size=12), st.integers(0, 80))
def test_volume_at_matches_profile(contracts, t):
    book = _book(contracts)
    for r in range(len(book)):
        assert book.volume_at(t, np.array([r]))[0] == pytest.approx(book.profile(r, 100)[t], rel=1e-12)


def test_active_index_follows_additions_and_closings():
    book = _book([(0, 12, 0, 10.0, 1.0), (0, 24, 6, 20.0, 1.0)])
    v0 = book.version
    assert book.active_capacity_rows().tolist() == [0, 1]
    book.add_many(buyer=np.array([3]), seller=np.array([2]), kind=np.array([1]), volume=np.array([5.0]),
                  start=np.array([0]), end=np.array([1]), price=np.array([2.0]), signed=np.array([0]),
                  status=np.array([1]))
    assert book.active_capacity_rows().tolist() == [0, 1]  # a completed spot row is not a capacity row
    vol_before = book.volume_at(3, book.active_capacity_rows()).copy()
    book.close([0], "defaulted", 3)
    assert book.version > v0
    assert book.active_capacity_rows().tolist() == [1]
    assert book.volume_at(3, book.active_capacity_rows()).tolist() == vol_before[1:].tolist()
    rows = book.add_many(buyer=np.array([4, 5]), seller=np.array([2, 2]), kind=np.array([0, 0]),
                         volume=np.array([1.0, 2.0]), start=np.array([3, 3]), end=np.array([15, 27]),
                         price=np.array([1.0, 1.0]), signed=np.array([3, 3]))
    assert rows.tolist() == [3, 4]
    assert book.active_capacity_rows().tolist() == [1, 3, 4]
    assert book.take_or_pay[3:5].tolist() == [1.0, 1.0]  # reserved contracts are take-or-pay by default


op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 3), st.sampled_from(["reserved", "spot", "chip_order",
                                                                  "equity_for_compute"]),
              st.sampled_from(["active", "completed"])),
    st.tuples(st.just("add_many"), st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=5)),
    st.tuples(st.just("close"), st.lists(st.integers(0, 40), max_size=4)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=40))
def test_active_index_is_what_a_scan_of_the_book_finds(ops):
    """The index of active capacity contracts, grown by appending and cut by closings, is always the scan of
    the whole book for active reserved and equity-for-compute rows, in ascending order; ``epoch`` changes
    exactly when a closing removes rows from it."""
    book = ContractBook(capacity=2)
    for o in ops:
        epoch, before = book.epoch, book.active_capacity_rows().copy()
        if o[0] == "add":
            _, buyer, kind, status = o
            book.add(buyer=buyer, seller=9, kind=kind, volume=1.0, start=0, end=12, price=1.0, signed=0,
                     status=status)
        elif o[0] == "add_many":
            rows = o[1]
            book.add_many(buyer=np.array([b for b, _ in rows], dtype=np.int64), seller=np.full(len(rows), 9),
                          kind=np.array([k for _, k in rows], dtype=np.int64), volume=np.ones(len(rows)),
                          start=np.zeros(len(rows), dtype=np.int64), end=np.full(len(rows), 12),
                          price=np.ones(len(rows)), signed=np.zeros(len(rows), dtype=np.int64))
        else:
            rows = [r for r in o[1] if r < len(book)]
            book.close(rows, "defaulted", 1)
            assert (book.epoch != epoch) == bool(set(rows) & set(before.tolist()))
        scan = np.flatnonzero((book.status == 0) & ((book.kind == 0) | (book.kind == 3)))
        assert book.active_capacity_rows().tolist() == scan.tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 100.0), min_size=1, max_size=8), st.lists(st.floats(0.0, 100.0), min_size=1, max_size=8))
def test_match_in_order_conserves_volumes(buy, sell):
    buy, sell = np.array(buy), np.array(sell)
    b, s, q = match_in_order(buy, sell)
    total = min(buy.sum(), sell.sum())
    assert (q > 0).all()
    assert q.sum() == pytest.approx(total, rel=1e-9, abs=1e-9)
    # No buyer gets more than it bid and no seller sells more than it had.
    assert (np.bincount(b, weights=q, minlength=buy.size) <= buy + 1e-9).all()
    assert (np.bincount(s, weights=q, minlength=sell.size) <= sell + 1e-9).all()
    # In order: a buyer is served by sellers at or after the one that served the previous buyer.
    assert (np.diff(b) >= 0).all() and (np.diff(s) >= 0).all()
    assert len(q) <= buy.size + sell.size - 1


def test_match_in_order_example():
    b, s, q = match_in_order(np.array([3.0, 0.0, 5.0]), np.array([4.0, 4.0]))
    assert list(zip(b.tolist(), s.tolist(), q.tolist(), strict=True)) == [(0, 0, 3.0), (2, 0, 1.0), (2, 1, 4.0)]


def test_lab_table_revenue_growth_over_last_year():
    tab = LabTable(capacity=1)
    rows = np.array([tab.new_row(), tab.new_row(), tab.new_row()])  # grows past its capacity
    assert tab.n == 3
    for month in range(20):
        tab.push_revenue(rows, np.array([100.0 + month, 0.0, 50.0 if month >= 15 else 0.0]))
    # Lab 0: revenue 119 now against 107 twelve months ago; lab 1 never earned; lab 2 earned nothing a year ago.
    assert tab.revenue_growth(rows).tolist() == pytest.approx([119 / 107 - 1, 0.0, 0.0])
    short = np.array([tab.new_row()])
    tab.push_revenue(short, np.array([10.0]))
    assert tab.revenue_growth(short).tolist() == [0.0]  # one month of history
    tab.push_revenue(short, np.array([15.0]))
    assert tab.revenue_growth(short).tolist() == [0.5]
