"""Grow (or shrink) a scenario's world to a given number of labs, keeping it proportional.

``scale_world(cfg, n_labs)`` is what ``abm run --labs N`` and ``abm bench`` use. The supply side is scaled
in size, not in number: the clouds and chip vendors are named firms in an oligopoly, and copying them would
make their concentration (cloud and vendor HHI) meaningless. Labs are the many small agents, so the world
grows by drawing more of them.
"""

from __future__ import annotations

from .scenario import Scenario, ScenarioError, apply_overrides, validate

# Market-level quantities of a month or of the whole world, multiplied by the scale factor.
AGGREGATES = (
    "demand.initial_usd_month",
    "background.volume_h100e",
    "chips.foundry_capacity_h100e_month",
    "capital.inflow_usd_month",
    "entry.rate_per_month",
    "policy.equity_deal_min_cash_usd",
)
CLOUD_FIELDS = ("fleet_h100e", "power_mw", "cash_usd", "debt_usd", "other_cashflow_usd_month")
VENDOR_FIELDS = ("capacity_h100e_month", "cash_usd")


def initial_labs(cfg: Scenario) -> int:
    """Labs at the start of a run: the named labs plus the ones drawn at random."""
    return len(cfg.labs) + cfg.generated_labs.n


def scale_world(cfg: Scenario, n_labs: int) -> Scenario:
    """The scenario with ``n_labs`` labs at the start and every aggregate scaled in proportion.

    With N0 the scenario's initial labs (named plus drawn) and s = n_labs / N0:

    * labs: the named labs are kept as they are (with their contracts); ``generated_labs.n`` becomes
      ``n_labs`` minus the named labs. Per-lab quantities do not scale: the drawn labs' cash distribution,
      entrants' seed capital, the smallest contract (``contracting.min_deal_h100e``), the wind-down cash,
      R&D costs (``efficiency.rd_half_usd``), public-compute eligibility.
    * clouds and vendors: the same firms, each s times as large: a cloud's ``fleet_h100e``, ``power_mw``,
      ``cash_usd``, ``debt_usd`` and ``other_cashflow_usd_month``; a vendor's ``capacity_h100e_month`` and
      ``cash_usd``. Shares (captive share, foundry shares), prices, costs, rates and lead times stay, so
      the initial power pipeline and order books, which are given in months or as shares of these
      quantities, scale with them.
    * market aggregates x s: end-user demand (``demand.initial_usd_month``), background compute demand
      (``background.volume_h100e``), foundry capacity (``chips.foundry_capacity_h100e_month``), investor
      inflow (``capital.inflow_usd_month``) and the entrants' arrival rate (``entry.rate_per_month``).
    * ``policy.equity_deal_min_cash_usd`` x s: it is a threshold on a cloud's cash, which scales, so the
      same clouds can make equity-for-compute offers. Each offer stays a share of the cloud's cash capped
      by the lab's ask, and a cloud still makes at most one a year, so such deals touch a smaller share
      of the labs in a larger world.
    * not scaled: growth rates, elasticities and preferences. The product market is a nested logit whose
      adoption starts at ``demand.adoption_initial`` in any world (the first month's inclusive value is
      the reference), so a larger world starts with the same adoption; afterwards the inclusive value
      moves with capability and prices as in the smaller world.
    * events are kept as they are: a mega deal is one lab's deal with one cloud, and a public-compute
      programme's budget is a policy choice, so both are smaller relative to a larger world.

    ``n_labs`` equal to N0 returns an equal scenario. Raises ScenarioError (one line) if ``n_labs`` is
    smaller than the number of named labs or the scenario has no labs to scale.
    """
    if isinstance(n_labs, bool) or not isinstance(n_labs, int):
        raise ScenarioError(f"--labs {n_labs!r}: must be a whole number")
    named = len(cfg.labs)
    n0 = initial_labs(cfg)
    if n0 == 0:
        raise ScenarioError(f"--labs {n_labs}: scenario {cfg.name!r} has no labs to scale")
    if n_labs < max(named, 1):
        why = f"{named} (the scenario's named labs)" if named else "1"
        raise ScenarioError(f"--labs {n_labs}: must be at least {why}")
    if n_labs == n0:
        return cfg.model_copy(deep=True)
    s = n_labs / n0
    data = cfg.model_dump(by_alias=True)
    source = f"--labs {n_labs}"
    over = {key: _get(data, key) * s for key in AGGREGATES}
    over["generated_labs.n"] = n_labs - named
    data = apply_overrides(data, over, source)
    data["clouds"] = [{**c, **{k: c[k] * s for k in CLOUD_FIELDS}} for c in data["clouds"]]
    data["vendors"] = [{**v, **{k: v[k] * s for k in VENDOR_FIELDS}} for v in data["vendors"]]
    note = f"scaled to {n_labs} labs: clouds, vendors and market aggregates x{s:.4g}"
    data["description"] = f"{data['description']} ({note})" if data.get("description") else note
    return validate(data, source)


def _get(data: dict, key: str):
    node = data
    for part in key.split("."):
        node = node[part]
    return node
