"""A job's prepared rows, kept between its tasks at the site.

Each task of a job (statistics rounds, the audit of the candidate) works on the same prepared
rows of the same source. Reading and preparing them once per job, not once per task, saves most
of a site's time in a federated job and makes every task see the same snapshot of a source that
changes underneath (a live database). Only the last few jobs are kept, in this process's memory:
the rows never touch another disk than the source's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import pandas as pd

DEFAULT_JOBS = 2


class PreparedRowsCache:
    """Prepared frames by (job, source, prep spec), least recently used dropped first."""

    def __init__(self, jobs: int = DEFAULT_JOBS) -> None:
        if jobs < 1:
            raise ValueError(f"the cache keeps at least one job's rows, got {jobs}")
        self.jobs = jobs
        self._frames: OrderedDict[tuple[str, str, str], pd.DataFrame] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, job_id: str, source: str, spec_json: str, load: Callable[[], pd.DataFrame]
    ) -> pd.DataFrame:
        """The cached rows of this job's source, loading them on first use; a copy, so that a
        task cannot change what the next one reads."""
        key = (job_id, source, spec_json)
        with self._lock:
            frame = self._frames.get(key)
            if frame is not None:
                self._frames.move_to_end(key)
                return frame.copy()
        frame = load()
        with self._lock:
            self._frames[key] = frame
            self._frames.move_to_end(key)
            while len({k[0] for k in self._frames}) > self.jobs:
                self._frames.popitem(last=False)
        return frame.copy()
