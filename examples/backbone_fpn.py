"""SwiftFormer as the backbone of torchvision's Faster R-CNN, through a feature pyramid network.

    python examples/backbone_fpn.py                          # fresh XS, 10 steps on synthetic boxes
    python examples/backbone_fpn.py --pretrained DIR_OR_HUB  # start from a classifier folder or hub id
    python examples/backbone_fpn.py --grad-checkpointing     # recompute backbone activations in backward

Needs torchvision (``pip install .[train]``). ``SwiftFormerFPN`` (``swiftformer.detection.model``) is all the
glue there is: the backbone's four stage maps (strides 4, 8, 16, 32) go into torchvision's
``FeaturePyramidNetwork``, which returns the dict of equal-width maps every torchvision detection model
takes. Tested by ``tests/test_backbone.py``, which trains it for a few steps. The library's Mask R-CNN
(``swiftformer train --task detection``, docs/dense.md) is the same on torchvision's ``MaskRCNN``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.models.detection import FasterRCNN

from swiftformer import SwiftFormerBackbone, SwiftFormerConfig
from swiftformer.detection.model import STAGES, SwiftFormerFPN


def faster_rcnn(backbone: SwiftFormerBackbone, num_classes: int, out_channels: int = 256, **kwargs) -> FasterRCNN:
    """torchvision's ``FasterRCNN`` on a SwiftFormer FPN; ``kwargs`` go to ``FasterRCNN`` (sizes, sampling ...).

    ``num_classes`` counts the background class. Its default image transform normalizes with the
    ImageNet mean and std, as SwiftFormer checkpoints expect, so pass images in [0, 1].
    """
    return FasterRCNN(SwiftFormerFPN(backbone, out_channels), num_classes=num_classes, **kwargs)


def synthetic_batch(
    batch_size: int, size: int, num_classes: int, generator: torch.Generator
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Noise images, each with one or two bright rectangles; the rectangles are the boxes, the class
    (1..num_classes-1) sets the colour channel."""
    images, targets = [], []
    for _ in range(batch_size):
        image = torch.rand(3, size, size, generator=generator) * 0.3
        boxes, labels = [], []
        for _ in range(int(torch.randint(1, 3, (), generator=generator))):
            w, h = (torch.randint(size // 6, size // 2, (2,), generator=generator)).tolist()
            x0 = int(torch.randint(0, size - w, (), generator=generator))
            y0 = int(torch.randint(0, size - h, (), generator=generator))
            label = int(torch.randint(1, num_classes, (), generator=generator))
            image[(label - 1) % 3, y0 : y0 + h, x0 : x0 + w] = 1.0
            boxes.append([x0, y0, x0 + w, y0 + h])
            labels.append(label)
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)})
    return images, targets


def train_steps(
    model: FasterRCNN,
    images: list[torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    steps: int,
    lr: float = 1e-3,
) -> list[float]:
    """``steps`` AdamW steps on one batch; returns the total loss before each step."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="xs", help="xs, s, l1 or l3 (a fresh model)")
    parser.add_argument("--pretrained", help="classifier/backbone folder or hub id to load instead")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--grad-checkpointing", action="store_true")
    args = parser.parse_args(argv)

    if args.pretrained:  # the classifier's head and final norm are dropped; the output norms start fresh
        backbone = SwiftFormerBackbone.from_pretrained(args.pretrained, out_features=STAGES, backbone_norm=True)
    else:
        backbone = SwiftFormerBackbone(SwiftFormerConfig.from_variant(args.variant, out_features=STAGES))
    if args.grad_checkpointing:
        backbone.gradient_checkpointing_enable()
    num_classes = 4  # background + 3
    model = faster_rcnn(backbone, num_classes, min_size=args.image_size, max_size=args.image_size)
    images, targets = synthetic_batch(args.batch_size, args.image_size, num_classes, torch.Generator().manual_seed(0))

    start = time.perf_counter()
    losses = train_steps(model, images, targets, args.steps)
    print(f"{args.steps} steps in {time.perf_counter() - start:.1f} s; loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    model.eval()
    with torch.no_grad():
        detections = model(images[:1])[0]
    print(
        f"first image: {len(detections['boxes'])} detections, best score {detections['scores'].max():.3f}"
        if len(detections["boxes"])
        else "first image: no detections"
    )


if __name__ == "__main__":
    main()
