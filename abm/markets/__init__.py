"""The markets of the model, one module per ODD submodel; each is a set of functions of a world.

=================  =====  ==========================================================================
module             ODD    what it owns
=================  =====  ==========================================================================
``chips``          S4     vendors' allocation of constrained output to clouds' orders (phase 4)
``capital``        S8     investor inflow and allocation, equity-for-compute deals, sentiment (6, 11)
``contracting``    S6     quotes, Nash bargaining, reserved contracts in priority rounds (phase 7)
``spot``           S7     uniform-price spot clearing with background demand (phase 8)
``settlement``     S1-S3  delivery, product market, payments and defaults, R&D, training runs (phase 9)
``entry``          S9     exit with take-or-pay recovery, the entry barrier, entrants (phase 10)
=================  =====  ==========================================================================

A market reads and writes shared state only through the world (:class:`abm.world.World`) and shares
arithmetic through :mod:`abm.economics`; it calls no other market's private helpers.
"""
