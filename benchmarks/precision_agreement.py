"""Top-1 agreement of the reduced-precision paths with float32, on a trained model and on perturbed weights.

    python benchmarks/precision_agreement.py --model runs/demo/run/best --data-dir runs/demo/data/val \
        --calibration-dir runs/demo/data/train [--exports]
    python benchmarks/precision_agreement.py --perturbed xs --num-images 64       # random weights, 224x224

For each path: accuracy (when the data has labels), top-1 agreement with the float32 fused model, and
max |Δlogit| / max |logit|. Paths: ``fp32`` / ``bf16`` / ``int8`` of :func:`swiftformer.optimize_for_inference`
(compiled, as users run them); with ``--exports`` also the int8 ONNX (onnxruntime), int8 TFLite (LiteRT)
and bf16 OpenVINO exports of :func:`swiftformer.export.export`, calibrated on ``--calibration-dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification, optimize_for_inference
from swiftformer.export import export, load_calibration_images
from swiftformer.perf import tune_malloc

BATCH = 40


def labelled_images(data_dir: str, model_dir: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(pixel_values (N, 3, H, W), labels (N,) as model outputs, class names) of an image-folder split."""
    from swiftformer.image_processing import load_processor
    from swiftformer.training.data import build_eval_transform, open_dataset
    from swiftformer.training.evaluate import map_labels

    model = SwiftFormerForImageClassification.from_pretrained(model_dir)
    dataset = open_dataset(data_dir, None, build_eval_transform(load_processor(model_dir)[0]))
    label_map = map_labels(list(dataset.classes), model.config, verbose=False)
    pixels, labels = zip(*[(dataset[i][0], label_map[dataset[i][1]]) for i in range(len(dataset))])
    return torch.stack(pixels), torch.tensor(labels), list(dataset.classes)


def logits_of(run, pixels: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat(
            [torch.as_tensor(np.asarray(run(pixels[i : i + BATCH]))).float() for i in range(0, len(pixels), BATCH)]
        )


def exported_runners(model, calibration: torch.Tensor, folder: Path) -> dict:
    """Runners (pixel_values -> logits) for the int8 ONNX and int8 TFLite exports and bf16 OpenVINO
    (``backend="openvino"``: the model ``swiftformer export --format openvino`` writes, built in memory)."""
    import onnxruntime as ort

    runners = {}
    size = tuple(calibration.shape[2:])
    verify = calibration[:4]
    export(
        model,
        folder / "q.onnx",
        "onnx",
        precision="int8",
        calibration=calibration,
        verify_inputs=verify,
        latency_runs=0,
    )
    session = ort.InferenceSession(str(folder / "q.onnx"), providers=["CPUExecutionProvider"])
    runners["onnx int8 (onnxruntime)"] = lambda x: session.run(["logits"], {"pixel_values": x.numpy()})[0]
    try:
        from swiftformer.export.keras import TFLiteRunner

        export(
            model,
            folder / "q.tflite",
            "tflite",
            precision="int8",
            calibration=calibration,
            image_size=size,
            verify_inputs=verify,
            latency_runs=0,
        )
        tflite = TFLiteRunner(folder / "q.tflite")
        runners["tflite int8 (LiteRT)"] = lambda x: tflite(x.numpy())
    except ImportError as err:
        print(f"skipping TFLite: {err}", file=sys.stderr)
    runners["openvino bf16"] = optimize_for_inference(model, precision="bf16", backend="openvino")
    return runners


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="trained model folder")
    parser.add_argument("--data-dir", help="image folder (CLASS/*.png) to compare on")
    parser.add_argument("--calibration-dir", help="images to calibrate int8 on (default: --data-dir)")
    parser.add_argument("--num-calibration", type=int, default=128)
    parser.add_argument("--perturbed", metavar="VARIANT", help="instead: random perturbed weights of this variant")
    parser.add_argument("--image-size", type=int, default=224, help="with --perturbed")
    parser.add_argument("--num-images", type=int, default=64, help="with --perturbed: random normal inputs")
    parser.add_argument("--exports", action="store_true", help="also int8 ONNX / TFLite and bf16 OpenVINO exports")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tune_malloc()

    labels = None
    if args.perturbed:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from _helpers import perturb_

        torch.manual_seed(0)
        model = perturb_(SwiftFormerForImageClassification(SwiftFormerConfig.from_variant(args.perturbed))).eval()
        gen = torch.Generator().manual_seed(1)
        pixels = torch.randn(args.num_images, 3, args.image_size, args.image_size, generator=gen)
        calibration = torch.randn(32, 3, args.image_size, args.image_size, generator=gen)
        what = f"perturbed {args.perturbed}, {args.num_images} random inputs at {args.image_size}"
    else:
        if not (args.model and args.data_dir):
            parser.error("give --model and --data-dir, or --perturbed VARIANT")
        model = SwiftFormerForImageClassification.from_pretrained(args.model).eval()
        pixels, labels, _ = labelled_images(args.data_dir, args.model)
        calibration = load_calibration_images(
            args.calibration_dir or args.data_dir, tuple(pixels.shape[2:]), args.num_calibration, args.model
        )
        what = f"{args.model} on {len(pixels)} images of {args.data_dir}, calibrated on {len(calibration)} images"

    paths = {
        p: optimize_for_inference(
            model, precision=p, backend="inductor", calibration=calibration[:BATCH] if p == "int8" else None
        )
        for p in ("fp32", "bf16", "int8")
    }
    with tempfile.TemporaryDirectory() as folder:
        if args.exports:
            paths.update(exported_runners(model, calibration, Path(folder)))
        reference = logits_of(paths["fp32"], pixels)
        rows = []
        for name, run in paths.items():
            logits = logits_of(run, pixels)
            rows.append(
                {
                    "path": name,
                    "accuracy": None if labels is None else (logits.argmax(-1) == labels).float().mean().item(),
                    "top1_agreement_with_fp32": (logits.argmax(-1) == reference.argmax(-1)).float().mean().item(),
                    "max_rel_diff": ((logits - reference).abs().max() / reference.abs().max()).item(),
                }
            )
    if args.json:
        print(json.dumps({"what": what, "rows": rows}, indent=2))
        return
    print(what)
    print(f"{'path':28s} {'accuracy':>9s} {'agree fp32':>11s} {'rel diff':>9s}")
    for r in rows:
        acc = "" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        print(f"{r['path']:28s} {acc:>9s} {100 * r['top1_agreement_with_fp32']:10.2f}% {r['max_rel_diff']:9.2e}")


if __name__ == "__main__":
    main()
