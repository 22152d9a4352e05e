"""Analysis of runs: load result records or W&B runs into one DataFrame (:mod:`analysis.runs`), tables of
mean ± std per parameter and per fold (:mod:`analysis.summarize`), the report's figures (:mod:`analysis.plots`)
and the whole report as a folder with a Markdown page (:mod:`analysis.report`, ``analysis/report.ipynb``)."""
