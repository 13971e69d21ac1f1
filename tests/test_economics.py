"""Tests of abm.economics against hand derivations, published values and invariants a bug would break."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abm import economics as ec

# Besiroglu et al. (2024) refit of Chinchilla: L = E + A N^-alpha + B D^-beta, E = 1.8172.
A_COEF, B_COEF, ALPHA, BETA = 482.01, 2085.43, 0.3478, 0.3658
GAMMA = ec.scaling_exponent(ALPHA, BETA)
G_COEF = ec.scaling_coefficient(A_COEF, B_COEF, ALPHA, BETA)

finite = dict(allow_nan=False, allow_infinity=False)
qty = st.floats(0.0, 100.0, **finite)
price = st.floats(0.0, 100.0, **finite)


# --------------------------------------------------------------------------------------------- S1 scaling


def _min_loss_over_n(c: float, a: float = A_COEF, b: float = B_COEF, alpha: float = ALPHA,
                     beta: float = BETA) -> float:
    """Minimum over N of A N^-alpha + B (C/6N)^-beta by golden-section search in ln N (convex there)."""
    def f(x):
        return a * math.exp(-alpha * x) + b * math.exp(-beta * (math.log(c / 6.0) - x))
    lo, hi = 0.0, math.log(c / 6.0)
    phi = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(200):
        x1, x2 = hi - phi * (hi - lo), lo + phi * (hi - lo)
        if f(x1) < f(x2):
            hi = x2
        else:
            lo = x1
    return f(0.5 * (lo + hi))


def test_scaling_exponent_besiroglu():
    """Besiroglu et al. (2024): 0.3478 x 0.3658 = 0.12722524, / (0.3478 + 0.3658 = 0.7136) = 0.1782865."""
    assert GAMMA == pytest.approx(0.1782865, abs=1e-7)


@pytest.mark.parametrize("alpha,beta,gamma", [(ALPHA, BETA, 0.1782865), (0.5, 0.5, 0.25), (0.3, 0.6, 0.2),
                                              (0.6, 0.3, 0.2)])
def test_scaling_exponent_is_slope_of_numerical_frontier(alpha, beta, gamma):
    """gamma is minus the slope of ln(min over N of the Chinchilla loss) against ln C, found by search.

    Hand values: 0.25/1.0 = 0.25 for alpha = beta = 0.5; 0.18/0.9 = 0.2 for (0.3, 0.6) in either order.
    The frontier is a power law in C, so the secant slope is the same over every span of compute.
    """
    assert ec.scaling_exponent(alpha, beta) == pytest.approx(gamma, abs=1e-7)
    cs = [1e20, 1e23, 1e26, 1e29]
    ln_r = [math.log(_min_loss_over_n(c, alpha=alpha, beta=beta)) for c in cs]
    for i in range(len(cs) - 1):
        slope = (ln_r[i + 1] - ln_r[i]) / (math.log(cs[i + 1]) - math.log(cs[i]))
        assert -slope == pytest.approx(gamma, rel=1e-6)


def test_scaling_exponent_limits():
    """With unlimited data (beta -> inf) only the parameter term is left, so gamma -> alpha; and vice versa."""
    assert ec.scaling_exponent(0.3, 1e12) == pytest.approx(0.3, rel=1e-9)
    assert ec.scaling_exponent(1e12, 0.45) == pytest.approx(0.45, rel=1e-9)


def test_scaling_coefficient_hand_case():
    """A = B = 1, alpha = beta = 0.5: N^-1/2 + D^-1/2 with ND = C/6 is least at N = D = (C/6)^1/2 (AM-GM).

    So R(C) = 2 (C/6)^-1/4: G = 2 x 6^0.25 = 3.1301691, and at C = 6e24, R = 2 x (1e24)^-1/4 = 2e-6.
    """
    g = ec.scaling_coefficient(1.0, 1.0, 0.5, 0.5)
    assert g == pytest.approx(3.1301691, abs=1e-7)
    assert float(ec.reducible_loss(6e24, g, ec.scaling_exponent(0.5, 0.5))) == pytest.approx(2e-6, rel=1e-12)


@pytest.mark.parametrize("c", [1e21, 1e24, 1e27])
def test_scaling_coefficient_matches_numerical_frontier(c):
    """G C^-gamma equals the numerically minimised reducible loss subject to C = 6ND (Hoffmann et al. 2022)."""
    assert float(ec.reducible_loss(c, G_COEF, GAMMA)) == pytest.approx(_min_loss_over_n(c), rel=1e-6)


def test_tenfold_compute_cuts_reducible_loss_by_a_third():
    """R(10C)/R(C) = 10^-gamma, so 10x compute cuts the reducible loss by 1 - 10^-0.1783 = 33.7%."""
    r1, r10 = ec.reducible_loss(np.array([1e24, 1e25]), G_COEF, GAMMA)
    cut = 1.0 - r10 / r1
    assert cut == pytest.approx(1.0 - 10.0 ** (-GAMMA), rel=1e-12)
    assert cut == pytest.approx(0.337, abs=1e-3)


def test_capability_monotone_and_inverted():
    """q = -ln R(C) rises by gamma ln 10 per decade and effective_flop_for_capability undoes it."""
    c = np.logspace(18, 30, 25)
    q = ec.capability(c, G_COEF, GAMMA)
    assert np.all(np.diff(q) > 0)
    assert np.diff(q[::2]) == pytest.approx(GAMMA * math.log(10.0), rel=1e-9)
    assert ec.effective_flop_for_capability(q, G_COEF, GAMMA) == pytest.approx(c, rel=1e-9)


def test_flop_per_h100e_month():
    """989e12 FLOP/s x 2.63e6 s x 0.4 = 1.0406e21 (MODEL.md)."""
    assert ec.flop_per_h100e_month(0.4) == pytest.approx(989e12 * 2.63e6 * 0.4, rel=1e-12)


# -------------------------------------------------------------------------------------------- S2 efficiency


def test_efficiency_growth_saturates():
    """g_max rd/(rd+h): 0 at rd=0, g_max/2 at rd=h, increasing, concave, below g_max."""
    h, g_max = 5e8, math.log(2.0) / 8.0
    assert float(ec.efficiency_growth(0.0, h, g_max)) == 0.0
    assert float(ec.efficiency_growth(h, h, g_max)) == pytest.approx(g_max / 2.0, rel=1e-12)
    g = ec.efficiency_growth(np.linspace(0.0, 20 * h, 201), h, g_max)
    assert np.all(np.diff(g) > 0)
    assert np.all(np.diff(g, 2) < 0)
    assert np.all(g < g_max)


@given(st.lists(st.floats(-50, 50, **finite), min_size=1, max_size=20), st.floats(-50, 50, **finite),
       st.floats(0, 1, **finite))
def test_efficiency_diffusion_never_negative(log_eff, log_front, rate):
    """Catch-up rate*(front - own) when behind, zero (never negative) when ahead."""
    d = ec.efficiency_diffusion(log_eff, log_front, rate)
    assert np.all(d >= 0)
    behind = np.asarray(log_eff) < log_front
    assert d[behind] == pytest.approx(rate * (log_front - np.asarray(log_eff)[behind]))


@given(st.floats(0.01, 0.9, **finite), st.floats(1e-6, 1e3, **finite), st.floats(1e-6, 1e3, **finite),
       st.floats(0.01, 2.0, **finite))
def test_adapt_share_moves_toward_higher_return(share, mr_rd, mr_compute, speed):
    """The R&D share rises when R&D's marginal return is higher, falls when lower, and stays in [lo, hi]."""
    lo, hi = 0.01, 0.9
    new = ec.adapt_share(share, mr_rd, mr_compute, speed, lo, hi)
    assert lo <= new <= hi
    if mr_rd > mr_compute:
        assert new >= share
    elif mr_rd < mr_compute:
        assert new <= share
    else:
        assert new == pytest.approx(share)


# ------------------------------------------------------------------------------------------- S3 product market

utils = st.lists(st.floats(-20, 20, **finite), min_size=1, max_size=10)


@given(utils, st.floats(0.0, 3.0, **finite), st.floats(0.0, 3.0, **finite), st.floats(-20, 20, **finite))
def test_nest_shares_sum_to_one_and_inclusive_value_absolute(q, theta, eta, lift):
    """Shares within the nest sum to 1 and do not move when every lab gains the same capability; the
    inclusive value rises by exactly theta x that gain (absolute capability is worth something)."""
    lp = np.linspace(-1.0, 1.0, len(q))
    s, iv = ec.nest_shares(q, lp, theta, eta)
    assert np.all(s >= 0) and s.sum() == pytest.approx(1.0, abs=1e-12)
    s2, iv2 = ec.nest_shares(np.asarray(q) + lift, lp, theta, eta)
    assert s2 == pytest.approx(s, abs=1e-9)
    assert iv2 - iv == pytest.approx(theta * lift, abs=1e-9 * max(1.0, abs(iv)))
    # The inclusive value is at least the best single utility and at most it plus ln(number of labs).
    v = theta * np.asarray(q) - eta * lp
    assert v.max() - 1e-9 <= iv <= v.max() + math.log(len(q)) + 1e-9


def test_nest_shares_hand_value_and_monotonicity():
    """With theta=eta=1, q=(0, ln 2), p=1: weights 1 and 2 -> shares (1/3, 2/3), inclusive value ln 3."""
    s, iv = ec.nest_shares([0.0, math.log(2.0)], [0.0, 0.0], 1.0, 1.0)
    assert s == pytest.approx([1 / 3, 2 / 3]) and iv == pytest.approx(math.log(3.0))
    # Higher capability -> higher share; higher price -> lower share.
    s_cap, _ = ec.nest_shares([1.0, 1.5], [0.0, 0.0], 2.0, 1.5)
    s_pr, _ = ec.nest_shares([1.0, 1.0], [0.0, 0.5], 2.0, 1.5)
    assert s_cap[1] > s_cap[0] and s_pr[1] < s_pr[0]
    assert ec.nest_shares([], [], 1.0, 1.0)[1] == -math.inf


def test_adoption_hand_values():
    """Adoption starts where it is told, its log-odds move by nest_scale x the change in inclusive value,
    a scale of 0 fixes it, and an empty nest has none."""
    assert ec.adoption(5.0, 5.0, 0.3, 0.14) == pytest.approx(0.3)
    a = ec.adoption(7.0, 5.0, 0.3, 0.25)
    assert math.log(a / (1 - a)) - math.log(0.3 / 0.7) == pytest.approx(0.5)
    assert ec.adoption(50.0, 5.0, 0.3, 0.0) == pytest.approx(0.3)
    assert ec.adoption(4.0, 5.0, 0.3, 0.5) < 0.3 < ec.adoption(6.0, 5.0, 0.3, 0.5)
    assert ec.adoption(-math.inf, 5.0, 0.3, 0.5) == 0.0
    assert ec.adoption(-1e6, 5.0, 0.3, 0.5) == 0.0


# --------------------------------------------------------------------------------------------------- S4 chips


@given(st.floats(0, 500, **finite), st.lists(st.floats(-10, 100, **finite), min_size=1, max_size=15),
       st.sampled_from(["pro_rata", "priority"]))
def test_allocate_supply_bounds(capacity, orders, rule):
    """Fills are in [0, order], total = min(capacity, total orders)."""
    fill = ec.allocate_supply(capacity, orders, rule, order_rank=np.arange(len(orders)))
    o = np.maximum(np.asarray(orders), 0.0)
    assert np.all(fill >= 0) and np.all(fill <= o + 1e-12)
    assert fill.sum() == pytest.approx(min(capacity, o.sum()), abs=1e-9)


def test_allocate_supply_rules():
    """pro_rata: same fraction for all; priority: largest first, ties by rank; exact when capacity suffices."""
    pr = ec.allocate_supply(9.0, [3.0, 10.0, 5.0], "pro_rata")
    assert pr == pytest.approx([1.5, 5.0, 2.5])
    assert ec.allocate_supply(12.0, [3.0, 10.0, 5.0], "priority") == pytest.approx([0.0, 10.0, 2.0])
    assert ec.allocate_supply(5.0, [5.0, 5.0], "priority", order_rank=[1, 0]) == pytest.approx([0.0, 5.0])
    for rule in ("pro_rata", "priority"):
        assert ec.allocate_supply(20.0, [3.0, 10.0, 5.0], rule) == pytest.approx([3.0, 10.0, 5.0])
    with pytest.raises(ValueError):
        ec.allocate_supply(1.0, [3.0, 10.0], "lottery")


# ---------------------------------------------------------------------------------------------- S5 cloud cost


def _present_value(payment: float, rate_annual: float, months: int) -> float:
    """Value today of ``payment`` at the end of each of ``months`` months, discounted at the annual rate."""
    return sum(payment * (1.0 + rate_annual) ** (-k / 12.0) for k in range(1, months + 1))


@pytest.mark.parametrize("rate,life", [(0.08, 60), (0.13, 36), (0.07, 48), (0.25, 12), (0.0, 48)])
def test_annuity_factor_repays_one_dollar(rate, life):
    """``life`` monthly payments of the factor, discounted month by month at the annual rate, are worth $1."""
    assert _present_value(ec.annuity_factor(rate, life), rate, life) == pytest.approx(1.0, rel=1e-12)


def test_annuity_factor_hand_values_and_limits():
    """Hand values and limits of the monthly payment per $ of capex.

    * 12%/yr over 12 months: (1+r)^-12 = 1/1.12, so a = r x 1.12/0.12 with r = 1.12^(1/12) - 1 = 0.00948879:
      0.0885621.
    * 8%/yr over 60 months: r = 0.00643403, 1 - 1.08^-5 = 0.3194168, a = 0.0201431.
    * one month: repay the dollar plus one month's interest, 1.08^(1/12) = 1.0064340.
    * rate -> 0 tends to (and rate 0 is) straight-line 1/life; life -> inf tends to the monthly interest
      alone (a perpetuity), 0.0064340.
    * the payment falls with the life and rises with the rate.
    """
    assert ec.annuity_factor(0.12, 12) == pytest.approx(0.0885621, abs=1e-7)
    assert ec.annuity_factor(0.08, 60) == pytest.approx(0.0201431, abs=1e-7)
    assert ec.annuity_factor(0.08, 1) == pytest.approx(1.0064340, abs=1e-7)
    assert ec.annuity_factor(0.0, 48) == pytest.approx(1.0 / 48, rel=1e-12)
    assert ec.annuity_factor(1e-9, 48) == pytest.approx(1.0 / 48, rel=1e-6)
    assert ec.annuity_factor(0.08, 6000) == pytest.approx(0.0064340, abs=1e-7)
    by_life = [ec.annuity_factor(0.08, n) for n in (12, 24, 36, 60, 120)]
    by_rate = [ec.annuity_factor(r, 60) for r in (0.0, 0.02, 0.08, 0.15, 0.3)]
    assert np.all(np.diff(by_life) < 0) and np.all(np.diff(by_rate) > 0)


# 0.7 kW of IT power x PUE 1.2 x 730 h = 613.2 kWh a month, at 0.08 $/kWh: 49.056 $ of energy per H100e-month.
LC_ARGS = dict(chip_cost=25_000.0, facility_cost=10_000.0, kw=0.7, pue=1.2, energy_price_kwh=0.08,
               opex_month=50.0)
ENERGY_MONTH = 49.056


@pytest.mark.parametrize("rate,life", [(0.08, 60), (0.13, 36), (0.0, 48)])
def test_levelized_cost_breaks_even_over_the_life(rate, life):
    """A cloud that pays 35k$ up front and charges the levelized cost for ``life`` months, paying energy
    (49.056 $) and opex (50 $) each month, has a net present value of zero at its discount rate."""
    lc = ec.levelized_cost(rate_annual=rate, life_months=life, **LC_ARGS)
    margin = lc - ENERGY_MONTH - 50.0  # what is left each month to repay the capex
    npv = -35_000.0 + _present_value(margin, rate, life)
    assert npv == pytest.approx(0.0, abs=1e-6)
    # A cent more a month would leave a profit, a cent less a loss.
    assert -35_000.0 + _present_value(margin + 0.01, rate, life) > 0
    assert -35_000.0 + _present_value(margin - 0.01, rate, life) < 0


def test_levelized_cost_hand_value_and_parts():
    """8%/yr over 60 months: 35k$ x 0.0201431 = 705.007 + 49.056 energy + 50 opex = 804.063 $/H100e-month.

    At zero rate over 50 months: 35,000/50 = 700 + 49.056 + 50 = 799.056. Doubling the energy price or the
    PUE adds exactly one energy bill (49.056); a dollar of opex adds a dollar; moving capex between chip
    and facility changes nothing.
    """
    lc = ec.levelized_cost(rate_annual=0.08, life_months=60, **LC_ARGS)
    assert lc == pytest.approx(804.063, abs=1e-3)
    assert ec.levelized_cost(rate_annual=0.0, life_months=50, **LC_ARGS) == pytest.approx(799.056, rel=1e-12)
    dear = ec.levelized_cost(rate_annual=0.08, life_months=60, **{**LC_ARGS, "energy_price_kwh": 0.16})
    assert dear - lc == pytest.approx(ENERGY_MONTH, rel=1e-9)
    hot = ec.levelized_cost(rate_annual=0.08, life_months=60, **{**LC_ARGS, "pue": 2.4})
    assert hot - lc == pytest.approx(ENERGY_MONTH, rel=1e-9)
    opex = ec.levelized_cost(rate_annual=0.08, life_months=60, **{**LC_ARGS, "opex_month": 51.0})
    assert opex - lc == pytest.approx(1.0, rel=1e-9)
    moved = ec.levelized_cost(rate_annual=0.08, life_months=60,
                              **{**LC_ARGS, "chip_cost": 35_000.0, "facility_cost": 0.0})
    assert moved == pytest.approx(lc, rel=1e-12)


# ---------------------------------------------------------------------------------------------- S6 contracting


def test_rubinstein_weight():
    """beta_lab = r_cloud/(r_lab+r_cloud) (Rubinstein 1982): 0.01/(0.02+0.01) = 1/3; impatience lowers it."""
    assert float(ec.rubinstein_weight(0.02, 0.01)) == pytest.approx(1.0 / 3.0)
    assert float(ec.rubinstein_weight(0.01, 0.01)) == pytest.approx(0.5)
    w = ec.rubinstein_weight(np.array([0.005, 0.01, 0.05, 0.2]), 0.01)
    assert np.all(np.diff(w) < 0)


def test_nash_price_hand_values():
    """p = cloud_min + (1-beta) S: (2, 1, 0.25) -> 1.75; beta=1 -> cloud_min; beta=0 -> lab_max; S<0 -> NaN."""
    assert float(ec.nash_price(2.0, 1.0, 0.25)) == pytest.approx(1.75)
    assert float(ec.nash_price(2.0, 1.0, 1.0)) == 1.0
    assert float(ec.nash_price(2.0, 1.0, 0.0)) == 2.0
    assert math.isnan(float(ec.nash_price(1.0, 2.0, 0.5)))
    assert float(ec.nash_price(1.5, 1.5, 0.3)) == 1.5


@given(st.floats(0, 1e4, **finite), st.floats(0, 1e4, **finite), st.floats(0, 1, **finite))
def test_nash_price_within_bargaining_range(a, b, beta):
    """Individual rationality: the agreed price lies in [cloud_min, lab_max] whenever there is a deal."""
    lab_max, cloud_min = max(a, b), min(a, b)
    p = float(ec.nash_price(lab_max, cloud_min, beta))
    assert cloud_min <= p <= lab_max


def test_default_probability():
    """PD = 1/(1+cov^k): 0.5 at cover 1, 1/(1+9) = 0.1 at cover 3 (k=2), 1 at zero cover, decreasing."""
    assert float(ec.default_probability(1.0)) == pytest.approx(0.5)
    assert float(ec.default_probability(3.0, k=2.0)) == pytest.approx(0.1)
    assert float(ec.default_probability(0.0)) == pytest.approx(1.0)
    assert np.all(np.diff(ec.default_probability(np.linspace(0.0, 20.0, 50))) < 0)


# --------------------------------------------------------------------------------------------- S7 spot market


def test_spot_market_hand_case():
    """Bids 10,8,6 x5; asks 5,7,9 x4: 8 units trade (demand 10 at >=8 vs supply 8 at <=7), price (8+7)/2."""
    p, v, bf, af = ec.clear_spot_market([10.0, 8.0, 6.0], [5, 5, 5], [5.0, 7.0, 9.0], [4, 4, 4])
    assert v == pytest.approx(8.0) and p == pytest.approx(7.5)
    assert bf == pytest.approx([5.0, 3.0, 0.0]) and af == pytest.approx([4.0, 4.0, 0.0])


def test_spot_market_no_trade():
    """All asks above all bids: no trade, price NaN, zero fills."""
    p, v, bf, af = ec.clear_spot_market([5.0, 4.0], [3, 3], [6.0, 7.0], [3, 3])
    assert math.isnan(p) and v == 0.0 and not bf.any() and not af.any()


@settings(max_examples=300)
@given(st.lists(st.tuples(price, qty), min_size=1, max_size=8),
       st.lists(st.tuples(price, qty), min_size=1, max_size=8))
def test_spot_market_invariants(bids, asks):
    """Fills conserve volume, respect quantities and the clearing price, and leave no gains from trade."""
    bp, bq = map(np.array, zip(*bids, strict=True))
    ap, aq = map(np.array, zip(*asks, strict=True))
    p, v, bf, af = ec.clear_spot_market(bp, bq, ap, aq)
    tol = 1e-9
    assert bf.sum() == pytest.approx(v, abs=tol) and af.sum() == pytest.approx(v, abs=tol)
    assert np.all(bf >= 0) and np.all(bf <= bq + tol) and np.all(af >= 0) and np.all(af <= aq + tol)
    if v > 0:
        assert np.all(bp[bf > tol] >= p) and np.all(ap[af > tol] <= p)
    else:
        assert math.isnan(p)
    # No remaining bid is willing to pay a remaining ask's price (volume is maximal).
    rb, ra = bq - bf > tol, aq - af > tol
    if rb.any() and ra.any():
        assert bp[rb].max() < ap[ra].min()


# --------------------------------------------------------------------------------------------- S8 capital


@settings(max_examples=300)
@given(st.floats(0, 1e4, **finite), st.lists(st.tuples(st.floats(0.01, 100, **finite), st.floats(0, 1e3, **finite)),
                                             min_size=1, max_size=10),
       st.floats(0, 3, **finite))
def test_allocate_capital_bounds(funds, seekers, kappa):
    """Total <= funds, each <= its ask, and when funds cover every ask all asks are met."""
    scores, asks = map(np.array, zip(*seekers, strict=True))
    out = ec.allocate_capital(funds, scores, asks, kappa)
    assert np.all(out >= 0) and np.all(out <= asks + 1e-9)
    assert out.sum() <= funds + 1e-6
    assert out.sum() == pytest.approx(min(funds, asks.sum()), abs=1e-6)
    if funds >= asks.sum():
        assert out == pytest.approx(asks, abs=1e-6)


def test_allocate_capital_kappa():
    """Uncapped, each seeker gets funds x ask x w^kappa / sum. Equal asks: weights (1,2) give 1/3-2/3 at
    kappa=1, 1/5-4/5 at kappa=2, equal at 0. Equal weights: the split follows the asks (each round gets the
    same fraction of its ask)."""
    big = [1e9, 1e9]
    assert ec.allocate_capital(90.0, [1.0, 2.0], big, 1.0) == pytest.approx([30.0, 60.0])
    assert ec.allocate_capital(100.0, [1.0, 2.0], big, 2.0) == pytest.approx([20.0, 80.0])
    assert ec.allocate_capital(90.0, [1.0, 5.0, 10.0], [1e9] * 3, 0.0) == pytest.approx([30.0] * 3)
    assert ec.allocate_capital(40.0, [3.0, 3.0], [100.0, 300.0], 1.5) == pytest.approx([10.0, 30.0])
    # Water-filling: a seeker capped at its ask leaves the rest to the other (asks 20 and 200, weights 2 and
    # 1, kappa 2: the split of 100 would be 100 x 80/280 = 28.6 to the first, capped at 20; 80 to the other).
    assert ec.allocate_capital(100.0, [2.0, 1.0], [20.0, 200.0], 2.0) == pytest.approx([20.0, 80.0])
    # Below the caps the split is 60 x 80/280 and 60 x 200/280.
    assert ec.allocate_capital(60.0, [2.0, 1.0], [20.0, 200.0], 2.0) == pytest.approx([60 * 80 / 280, 60 * 200 / 280])


def test_expected_return_is_half_the_surplus_per_dollar():
    """A round creating no value beyond its money returns exactly 1 per dollar; $30 of value created on $10
    asked leaves a surplus of 20, half to investors: (10 + 10)/10 = 2; value destroyed returns below 1."""
    assert ec.expected_return(110.0, 100.0, 10.0) == pytest.approx(1.0)
    assert ec.expected_return(130.0, 100.0, 10.0) == pytest.approx(2.0)
    assert ec.expected_return(100.0, 100.0, 10.0) == pytest.approx(0.5)
    assert ec.expected_return(25.0, 0.0, 5.0) == pytest.approx(3.0)


def test_firm_value_logit_share():
    """At the frontier (gap 0) with z_others = 1 the share is 1/2: value = 25 x 12 x 0.5 x demand. A gap of
    ln(3)/theta behind gives e^-ln3 = 1/3, share (1/3)/(1 + 1/3) = 1/4."""
    assert ec.firm_value(0.0, 1.0, 10.0, 2.0, 25.0) == pytest.approx(25 * 12 * 0.5 * 2.0)
    assert ec.firm_value(-math.log(3.0) / 10.0, 1.0, 10.0, 2.0, 25.0) == pytest.approx(25 * 12 * 0.25 * 2.0)
    gaps = np.linspace(-2, 0, 9)
    assert np.all(np.diff(ec.firm_value(gaps, 3.0, 5.0, 1.0, 10.0)) > 0)


@given(st.floats(1e6, 1e12, **finite), st.floats(0.1, 10.0, **finite))
def test_reachable_capability_inverts_capital_to_reach(budget, eff):
    """The capability a budget reaches costs exactly that budget (capital_to_reach / final-run share)."""
    g, gam, fpu, price, cs, frs = 1.0e3, 0.18, 1.0e21, 1500.0, 0.65, 0.06
    q = float(ec.reachable_capability(budget, eff, g, gam, fpu, price, cs, frs))
    assert ec.capital_to_reach(q, eff, g, gam, fpu, price, cs) / frs == pytest.approx(budget, rel=1e-9)


def test_allocate_by_entitlement():
    """Shares 0.5/0.3/0.2 of 100: requests (10, 50, 50): the first takes 10 of its 50; 40 unused goes to the
    two short ones 3:2 -> 30 + 24 = 54 > 50, so the second is capped at 50 and the third gets the last 40."""
    out = ec.allocate_by_entitlement(100.0, [0.5, 0.3, 0.2], [10.0, 50.0, 50.0])
    assert out == pytest.approx([10.0, 50.0, 40.0])
    # Within entitlements nothing is re-offered; never more than requested or than the total.
    assert ec.allocate_by_entitlement(100.0, [0.5, 0.5], [20.0, 30.0]) == pytest.approx([20.0, 30.0])
    big = ec.allocate_by_entitlement(100.0, [0.7, 0.3], [1e9, 1e9])
    assert big == pytest.approx([70.0, 30.0]) and big.sum() == pytest.approx(100.0)


def test_background_demand_curve():
    """Q(p_ref) = V, Q(choke) = 0, saturated below the lowest value, and the step bids add up to Q(lowest)."""
    v, pref, e, choke, low = 1000.0, 2.5, 1.2, 12.0, 0.8
    assert ec.background_demand(pref, v, pref, e, choke, low) == pytest.approx(v)
    assert ec.background_demand(choke, v, pref, e, choke, low) == pytest.approx(0.0, abs=1e-9)
    assert ec.background_demand(0.1, v, pref, e, choke, low) == pytest.approx(ec.background_demand(low, v, pref, e,
                                                                                                     choke, low))
    p, q = ec.background_bids(v, pref, e, choke, low)
    assert np.all(np.diff(p) < 0) and np.all(q >= 0)
    assert q.sum() == pytest.approx(ec.background_demand(low, v, pref, e, choke, low))


# ---------------------------------------------------------------------------------------------------- S9 entry


def test_capital_to_reach_hand_value():
    """G=1, gamma=0.5, q=0.5 ln 1e24 -> 1e24 eff FLOP; /2 eff /1e21 x 2000 $ /0.5 share = 2e6 $."""
    q = 0.5 * math.log(1e24)
    cap = ec.capital_to_reach(q, 2.0, 1.0, 0.5, 1e21, 2000.0, 0.5)
    assert cap == pytest.approx(2e6, rel=1e-9)
    assert ec.capital_to_reach(q, 4.0, 1.0, 0.5, 1e21, 2000.0, 0.5) == pytest.approx(cap / 2.0, rel=1e-12)


# ---------------------------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("n", [1, 2, 4, 10])
def test_hhi_equal_firms(n):
    """n equal firms: HHI = 10,000/n (one firm: 10,000)."""
    assert ec.hhi([7.0] * n) == pytest.approx(10_000.0 / n)


def test_hhi_hand_value_and_zero():
    """Shares 50/30/20 -> 2500+900+400 = 3800; all-zero -> 0."""
    assert ec.hhi([5.0, 3.0, 2.0]) == pytest.approx(3800.0)
    assert ec.hhi([0.0, 0.0]) == 0.0


def test_top_share():
    """(5,3,1,1): top-3 share 9/10, top-1 5/10; all-zero -> 0."""
    assert ec.top_share([1.0, 5.0, 1.0, 3.0], k=3) == pytest.approx(0.9)
    assert ec.top_share([1.0, 5.0, 1.0, 3.0], k=1) == pytest.approx(0.5)
    assert ec.top_share([0.0, 0.0]) == 0.0


@pytest.mark.parametrize("n", [2, 5, 10])
def test_gini(n):
    """Equal values -> 0; one non-zero among n -> (n-1)/n; all-zero -> 0."""
    assert ec.gini([3.0] * n) == pytest.approx(0.0, abs=1e-12)
    assert ec.gini([0.0] * (n - 1) + [4.0]) == pytest.approx((n - 1) / n)
    assert ec.gini([0.0] * n) == 0.0


def test_ramped_months_counts_the_ramp_as_a_triangle():
    assert ec.ramped_months(36, 0) == 36.0
    assert ec.ramped_months(36, 1) == 36.0
    # Months 1..6 deliver 1/6, 2/6, ..., 6/6: 3.5 full months, then 30 full months.
    assert ec.ramped_months(36, 6) == pytest.approx(33.5)
    # A term shorter than the ramp never reaches full volume.
    assert ec.ramped_months(3, 6) == pytest.approx(1.0)
