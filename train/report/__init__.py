"""Reports: tables (Markdown, JSON) and figures (matplotlib, Agg) made from results; never training.

- :mod:`.tables`: aggregation over seeds (mean, standard deviation, the seeds' values) and the
  Markdown tables a person reads;
- :mod:`.figures`: PNG figures (lines with seed spread, image grids, heat maps, matrices);
- :mod:`.tensorboard`: per-epoch scalars of a run as TensorBoard event files (optional extra).
"""

from .tables import aggregate, flatten, format_mean_std, markdown_table, series, summarise

__all__ = ["aggregate", "flatten", "format_mean_std", "markdown_table", "series", "summarise"]
