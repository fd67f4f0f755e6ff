"""Training, fine-tuning and evaluation: the paper's recipe on one process or many (torchrun).

- :mod:`.config` — :class:`TrainConfig`, recipes, config files (no torch)
- :mod:`.data` — image folders and Hugging Face datasets, transforms
- :mod:`.trainer` — the training loop, checkpoints, exact resume
- :mod:`.evaluate` — top-1/top-5, per-class accuracy, confusion matrix
- :mod:`.distributed` — process groups under torchrun
- :mod:`.plots` — training curves and confusion matrices

No argument parsing lives here: the ``train`` and ``eval`` commands are in :mod:`swiftformer.cli`.
"""
