"""Detection and instance segmentation (the paper's COCO Mask R-CNN): docs/dense.md.

``config`` describes a detector folder and needs no torch (the commands use it to refuse a detector where they
are classification-only); ``model`` is the detector itself (torchvision's Mask R-CNN on a SwiftFormer FPN).
"""
