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
* :mod:`.tasks`: studies made of many small independent tasks (probe entrants, sensitivity points):
  ``results.jsonl``, resume, the executor.
* :mod:`.sweep`: a grid of parameter values, an ensemble per cell (``abm sweep``).
* :mod:`.barriers`: the small-lab study with probe entrants (``abm barriers``).
* :mod:`.sensitivity`: SALib's Morris and Sobol analyses over ``parameter_bounds.toml`` (``abm sensitivity``).
* :mod:`.moments`, :mod:`.validation`, :mod:`.calibration`, :mod:`.stylized_facts`: the model against data.

These modules import the model (:mod:`abm`) and :mod:`analysis.runio`, never the command line or the views;
a study that has figures takes the function that draws them as an argument.
"""
