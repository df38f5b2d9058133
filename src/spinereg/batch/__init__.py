"""Cohorts: ``spinereg batch`` over a BIDS dataset on Dask, resumable, with group outputs.

:func:`run_batch` (library) finds the units (subject-sessions) of a BIDS dataset
(:mod:`~spinereg.batch.bids`), runs the configured pipeline on each (:mod:`~spinereg.batch.unit`,
:mod:`~spinereg.batch.steps`; configuration :mod:`~spinereg.batch.config`) on a Dask cluster
(:mod:`~spinereg.batch.engine`) and writes the group outputs (:mod:`~spinereg.batch.group`).
Output names: :mod:`~spinereg.batch.naming`.
"""

from spinereg.batch.bids import discover
from spinereg.batch.config import load_config
from spinereg.batch.run import BatchResult, run_batch

__all__ = ["BatchResult", "discover", "load_config", "run_batch"]
