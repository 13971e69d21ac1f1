"""Views: what a person looks at. Figures, reports, the animation and the dashboard, drawn from the files
that ``abm run``, ``abm ensemble``, ``abm compare`` and the studies wrote (the dashboard alone drives a live model).

* :mod:`.report`: ``abm report DIR``, one self-contained HTML page; it recognises the folder's kind and hands
  it to :mod:`.run_report`, :mod:`.ensemble_report`, :mod:`.comparison_report` or, for the folders of
  ``abm barriers``, ``abm sweep`` and ``abm sensitivity``, :mod:`.study_report`. What the three share (the
  columns' titles and units, number formats, figure style, the HTML page) is in :mod:`.common`.
* :mod:`.run_data` reads a run folder for the run report and the animation; :mod:`.run_figures` draws the
  run report's figures.
* :mod:`.overview`: ``abm overview DIR``, the 2x3 ``overview.png`` of a run.
* :mod:`.comparison_figures`: the ``figures/<metric>.png`` that ``abm compare`` writes;
  :mod:`.sweep_figures`, :mod:`.barriers_figures` and :mod:`.sensitivity_figures` the three studies' figures.
* :mod:`.network`: the contract network as a graph, its stable layout and its drawing.
* :mod:`.animate`: ``abm animate DIR``, the run month by month as a GIF (and MP4).
* :mod:`.dashboard`: the live SolaraViz dashboard; :mod:`.dashboard_server` starts it (``abm dashboard``).

Views import the model's public names, :mod:`analysis.experiments` for the metrics they compare and
:mod:`analysis.errors`; never the command line.
"""
