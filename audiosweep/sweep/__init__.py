"""Sweeps: W&B sweep files checked and expanded (``spec``, ``params``), run locally on a pool of workers
(``runner``) or by one W&B agent per GPU (``agents``), child processes handled by ``procs``; the command line
is ``python -m audiosweep.sweep check|run|agents`` (``cli``)."""
