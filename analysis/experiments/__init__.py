"""Experiments: the model run many times, and the statistics over those runs. Nothing here draws: the
figures and reports of these runs are in :mod:`analysis.views`.

* :mod:`.ensemble`: one scenario with many seeds (``abm ensemble``), each seed's timeseries kept, and the
  per-month summary ``ensemble.csv``; resumable, byte-identical whatever the executor.
* :mod:`.compare`: scenarios compared with common random numbers (``abm compare``): paired differences of
  the headline metrics at horizons, ``comparison.csv`` and ``comparison.md``.
* :mod:`.executors`: where the seeds run: in this process, a local process pool or a Dask cluster.
* :mod:`.equivalence`: whether a changed model's ensemble statistics agree with a reference sample
  (``python -m analysis.experiments.equivalence``).
* :mod:`.output_hashes`: SHA-256 of every output file of a fixed set of runs, the check that a refactoring
  keeps outputs byte-identical.

These modules import the model (:mod:`abm`) and :mod:`analysis.runio`, never the command line or the views.
"""
