"""Files in and out: atomic writes, the hub, checkpoint files and their matching, foreign layouts.

Nothing here builds a model: these modules read and write tensors, JSON and folders, so the PyTorch
and Keras models above them share one way of finding, checking and writing weights.

- :mod:`.files` — atomic writes and folder replacement, JSON
- :mod:`.hub` — model-folder file names, local folder or hub id → local file
- :mod:`.architecture` — the architecture a state dict holds, read from its shapes
- :mod:`.checkpoints` — safe loading (safetensors, ``weights_only`` pickles), saving, key/shape matching
- :mod:`.foreign` — key layouts of the original repository and timm, and their renaming
"""
