"""Analysis of runs: load result records or W&B runs into one DataFrame (:mod:`analysis.runs`), warn about what
the statistics pool (:mod:`analysis.checks`), tables of mean ± std per parameter and per fold
(:mod:`analysis.summarize`), the report's sections (:mod:`analysis.plan`) with their figures
(:mod:`analysis.figures`, files by :mod:`analysis.plots`) and the whole report as a folder with a Markdown page
(:mod:`analysis.report`, shown by ``analysis/report.ipynb``); our runs against published ones
(:mod:`analysis.reproduce`). Values and axis labels follow the config's metadata
(:mod:`analysis.labels`); the commands share :mod:`analysis.cli`, default paths are in :mod:`analysis.paths`."""
