"""The Keras 3 classes (TensorFlow or JAX backend): ``TFSwiftFormerModel``, ``TFSwiftFormerForImageClassification``.

Importing this package imports Keras; ``import swiftformer`` alone does not (``pip install .[tf]``).
"""

from .models import TFSwiftFormerForImageClassification, TFSwiftFormerModel, TFSwiftFormerPreTrainedModel

__all__ = ["TFSwiftFormerForImageClassification", "TFSwiftFormerModel", "TFSwiftFormerPreTrainedModel"]
