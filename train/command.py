"""The ``infodropout`` console script (and ``python -m infodropout.train``).

It imports the command line, and with it torch and Pyro (seconds), inside the same guard as the commands
themselves: Ctrl-C while it loads is ``infodropout: interrupted`` and status 130, not a traceback from the
middle of an import. Nothing is imported here before that guard.
"""

import sys


def main(argv=None) -> int:
    try:
        from .cli import main as run

        return run(argv)
    except KeyboardInterrupt:  # while importing or parsing; a command reports its own
        print("infodropout: interrupted", file=sys.stderr)
        return 130
