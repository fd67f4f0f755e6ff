"""`make demo`: train, evaluate and use a SwiftFormer on a real dataset, offline, in a few minutes.

The data are scikit-learn's bundled handwritten digits (1,797 scans of 8x8 pixels, 10 classes),
written out as an image folder at 32x32, split 80/20 (stratified, fixed seed). Then, exactly as a
user would, through the command line:

    swiftformer train --config configs/demo-digits.yaml --data-dir runs/demo/data --output runs/demo/run
    swiftformer eval --data-dir runs/demo/data/val --model runs/demo/run/best --output runs/demo/eval
    swiftformer predict <five held-out images> --model runs/demo/run/best

and prints the figures at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_digits(folder: Path, size: int = 32, seed: int = 0) -> dict[str, int]:
    """The digits as ``folder/{train,val}/{0..9}/*.png`` (grayscale upsampled to ``size``, as RGB)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0 * 255).round().astype(np.uint8)  # values 0..16 → 0..255
    train_idx, val_idx = train_test_split(
        np.arange(len(images)), test_size=0.2, stratify=digits.target, random_state=seed
    )
    if folder.exists():
        shutil.rmtree(folder)
    for split, indices in (("train", train_idx), ("val", val_idx)):
        for i in indices:
            target = folder / split / str(digits.target[i])
            target.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(images[i], mode="L").resize((size, size), Image.Resampling.BICUBIC)
            image.convert("RGB").save(target / f"{i:04d}.png")
    return {"train": len(train_idx), "val": len(val_idx)}


def swiftformer(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """Run the command line as a user would; stop the demo with its messages if it fails."""
    command = [sys.executable, "-m", "swiftformer", *args]
    print("$ swiftformer " + " ".join(args), flush=True)
    result = subprocess.run(command, text=True, capture_output=capture, check=False)
    if result.returncode != 0:
        if capture:
            print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
        raise SystemExit(f"demo failed: swiftformer {args[0]} exited with status {result.returncode}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(ROOT / "runs" / "demo"), help="demo folder (default runs/demo)")
    parser.add_argument("--epochs", type=int, help="override the config's 30 epochs")
    args = parser.parse_args()
    out = Path(args.output)
    data, run = out / "data", out / "run"

    counts = write_digits(data)
    print(f"wrote {counts['train']} training and {counts['val']} held-out digits to {data}")
    if run.exists():
        shutil.rmtree(run)
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    start = time.perf_counter()
    swiftformer(
        "train",
        "--config",
        str(ROOT / "configs" / "demo-digits.yaml"),
        "--data-dir",
        str(data),
        "--output",
        str(run),
        *extra,
    )
    train_seconds = time.perf_counter() - start

    result = json.loads(
        swiftformer(
            "eval",
            "--data-dir",
            str(data / "val"),
            "--model",
            str(run / "best"),
            "--output",
            str(out / "eval"),
            "--json",
            capture=True,
        ).stdout
    )
    held_out = sorted((data / "val").glob("*/*.png"))[::72][:5]
    predictions = [
        json.loads(line)
        for line in swiftformer(
            "predict", *map(str, held_out), "--model", str(run / "best"), "--top-k", "1", "--json", capture=True
        ).stdout.splitlines()
    ]

    print("\n=== demo results ===")
    print(f"training:  {counts['train']} images, {train_seconds:.0f} s (including start-up and validation)")
    print(
        f"held-out:  top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  loss {result['loss']:.4f}  "
        f"({result['images']} images, {result['images_per_second']:.0f} img/s)"
    )
    for p in predictions:
        truth = Path(p["image"]).parent.name
        best = p["predictions"][0]
        print(
            f"predict:   {Path(p['image']).relative_to(data)}  →  {best['label']} ({best['score']:.3f})  "
            f"{'ok' if best['label'] == truth else 'WRONG'}"
        )
    print(f"model:     {run / 'best'}  (swiftformer predict IMAGE --model {run / 'best'})")
    print(
        f"plots:     {run / 'loss.png'}, {run / 'accuracy.png'}, {run / 'lr.png'}, {out / 'eval' / 'confusion_matrix.png'}"
    )


if __name__ == "__main__":
    main()
