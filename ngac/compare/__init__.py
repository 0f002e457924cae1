"""``ngac compare``: learning curves and summary tables for a set of MLflow runs.

The runs are those of an experiment, or else of a sweep (tag ``sweep``), read through the MLflow
tracking API only, so a local store and a tracking server behave the same. Within each
environment, runs are grouped by a tag (default ``algo``, else ``backend``) or a param
(``param:curvature.damping``), and a group's runs are its seeds.

Modules, in the order the data flows:

* :mod:`.store`: reach the store and select the runs;
* :mod:`.runs`: read one run's curves, timings, budget and diagnostics;
* :mod:`.stats`: per (environment, group): mean and std over seeds, AUC, the summary row, budget checks;
* :mod:`.tables`, :mod:`.plots`: the Markdown and CSV tables, the figures;
* :mod:`.report`: :func:`compare_runs`, which does all of it; :mod:`.command`: the command line.
"""

from .command import main
from .report import compare_runs
from .stats import area_under_curve, mean_std_curve

__all__ = ["area_under_curve", "compare_runs", "main", "mean_std_curve"]
