"""``python -m infodropout.train COMMAND ...``: the ``infodropout`` command line as a module, e.g. for
``torchrun --nproc-per-node=K -m infodropout.train train PRESET --out RUN``. (``-m infodropout`` cannot
work: ``infodropout`` is a namespace package of the repository's folders, with no module of its own.)"""

import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())
