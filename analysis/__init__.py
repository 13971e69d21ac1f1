"""Everything built on the model (:mod:`abm`), in layers; each imports only from the layers listed before it,
and :mod:`abm` never imports this package.

* :mod:`.errors`: :class:`~analysis.errors.UserError`, the one-line user mistake, and its exit status.
* :mod:`.runio`: running a scenario and writing its run folder atomically.
* :mod:`.experiments`: the model run many times: ensembles of seeds, paired comparisons of scenarios, the
  executors that run the seeds, the equivalence check and the output hashes of refactorings.
* :mod:`.views`: figures, the HTML reports, the contract network, the animation and the live dashboard.
* :mod:`.bench`: the benchmark (``abm bench``).
* :mod:`.cli`: the ``abm`` command line, on top of all of them.
"""
