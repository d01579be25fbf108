"""Time the project's training step against a hand-written PyTorch step of the same model and against
stock ``pyro.infer.SVI.step`` (the same as ``infodropout bench``).

    python benchmarks/bench_step.py --device cpu --out runs/bench
"""

import sys

from infodropout.train.bench import main

if __name__ == "__main__":
    sys.exit(main())
