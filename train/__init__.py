"""training: the SVI engine, data, configs, studies and the command line.

Importing this package asks the OpenMP runtime's idle threads to sleep instead of spinning
(``OMP_WAIT_POLICY=PASSIVE``), unless the variable is set already (a value the user set is kept). The
runtime reads it once, when torch is first imported, so it is set here, before any module of this package
imports torch (the command line and ``python -m infodropout.train`` import this first); processes started
from this one, such as a study's spawned workers, inherit it. See :mod:`infodropout.train.threads`.
"""

import os

#: The environment variable of the OpenMP wait policy, and the value set where it is unset.
WAIT_POLICY_VARIABLE, WAIT_POLICY = "OMP_WAIT_POLICY", "PASSIVE"

os.environ.setdefault(WAIT_POLICY_VARIABLE, WAIT_POLICY)
