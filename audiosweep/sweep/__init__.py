"""Sweeps: W&B sweep files checked and expanded (``spec``, ``params``), run locally on a pool of workers
(``runner``) from a source of runs (``plan`` for grid and random, ``bayes`` on an Optuna study) with an optional
pruner (``early_terminate``), the Optuna side in ``study``, or run by one W&B agent per GPU (``agents``); child
processes handled by ``procs``; the command line is ``python -m audiosweep.sweep check|run|agents`` (``cli``)."""
