"""After training: what the learned noise tells, from finished run directories, each written into a new
output directory.

- :mod:`.runs`: a finished run read without claiming its directory, and the new output directory;
- :mod:`.uncertainty`: ``infodropout uncertainty`` (calibration and out-of-distribution detection);
- :mod:`.prune`: ``infodropout prune`` (pruning by the information of the units).

The information plane is a study (:mod:`infodropout.train.studies.info_plane`). The measurements live in
:mod:`infodropout.train.evaluation` (``uncertainty``, ``pruning``, ``scores``), the figures in
:mod:`infodropout.train.report.diagnostics`.
"""

from .prune import prune
from .uncertainty import uncertainty

__all__ = ["prune", "uncertainty"]
