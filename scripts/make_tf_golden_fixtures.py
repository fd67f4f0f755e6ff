"""Golden fixtures from transformers 4.57's TF port (TFSwiftFormerForImageClassification, Keras 2).

The reference needs Keras 2 (tf-keras) and transformers < 5, which cannot share a Python environment
with this library's Keras 3, so it runs in a separate venv, ``.venv-tfref``::

    python3 -m venv .venv-tfref
    .venv-tfref/bin/pip install tensorflow-cpu tf-keras 'transformers==4.57.*' numpy safetensors h5py

Modes (run with the project's ``.venv/bin/python``):

* default — regenerate ``tests/fixtures/tf_golden_<case>.safetensors``. For each case: build the
  PyTorch model, perturb its weights, save the folder; the reference worker (in ``.venv-tfref``) loads
  it with transformers' own PyTorch→TF loader, runs the input, and saves ``tf_model.h5`` with its
  ``save_pretrained``. A fixture holds the config and the reference version (metadata), the input,
  the weights by PyTorch name (``weights.*``), the reference's logits and NCHW hidden states, and the
  reference's ``tf_model.h5`` content (``h5.<layer>/<weight name>`` plus the layer/weight name lists
  as metadata), so tests can rebuild that file without the reference.
* ``--check`` — compare this library's Keras model with the committed fixtures (no reference needed).
* ``--live`` — regenerate into a temporary folder and compare, writing nothing (needs ``.venv-tfref``).
* ``--reference-worker DIR`` — internal: the part that runs inside ``.venv-tfref``.

Exit status 0 when every comparison is within 1e-4 × max|value|.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REF_PYTHON = ROOT / ".venv-tfref" / "bin" / "python"
FIXTURES = ROOT / "tests" / "fixtures"
REL_TOL = 1e-4

# Configs the reference TF port supports (it cannot build use_layer_scale=False nor drop_path_rate > 0).
CASES: dict[str, tuple[dict, tuple[int, int, int, int]]] = {
    "tiny_default": ({"depths": [2, 1, 1, 1], "embed_dims": [8, 12, 16, 20], "num_labels": 5}, (2, 3, 48, 32)),
    "tiny_relu_odd": (
        {
            "depths": [1, 2, 1, 1],
            "embed_dims": [8, 8, 16, 16],
            "num_labels": 3,
            "hidden_act": "relu",
            "mlp_ratio": 3,
            "downsamples": [False, True, False, True],
        },
        (2, 3, 32, 40),
    ),
    "tiny_gelu_new_down5": (
        {
            "depths": [1, 1, 2, 1],
            "embed_dims": [8, 12, 12, 16],
            "num_labels": 4,
            "hidden_act": "gelu_new",
            "down_patch_size": 5,
            "down_stride": 3,
            "down_pad": 2,
        },
        (2, 3, 48, 40),
    ),
}


# ---------------------------------------------------------------------------------------------------
# Inside .venv-tfref: transformers 4.57 + tf-keras
# ---------------------------------------------------------------------------------------------------


def reference_worker(work: Path) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import h5py
    import transformers
    from safetensors.numpy import load_file
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    for case_dir in sorted(p for p in work.iterdir() if p.is_dir()):
        config = transformers.SwiftFormerConfig.from_pretrained(case_dir / "pt")
        model = transformers.TFSwiftFormerForImageClassification(config)
        # transformers' own loader (its name conversion and transposes), fed numpy arrays: no torch here.
        state = {
            k: v
            for k, v in load_file(case_dir / "pt" / "model.safetensors").items()
            if not k.endswith("num_batches_tracked")
        }
        model, info = load_pytorch_state_dict_in_tf2_model(model, state, output_loading_info=True)
        if any(info.values()):
            raise SystemExit(f"{case_dir.name}: reference loading problems {info}")
        pixel_values = np.load(case_dir / "input.npy")
        out = model(pixel_values, output_hidden_states=True, training=False)
        arrays = {"logits": out.logits.numpy()}
        arrays.update({f"hidden_states.{i}": h.numpy() for i, h in enumerate(out.hidden_states)})
        model.save_pretrained(case_dir / "tf")
        layers: dict[str, list[str]] = {}
        with h5py.File(case_dir / "tf" / "tf_model.h5", "r") as f:
            for layer in f.attrs["layer_names"]:
                layer = layer.decode() if isinstance(layer, bytes) else str(layer)
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in f[layer].attrs["weight_names"]]
                layers[layer] = names
                arrays.update({f"h5.{layer}/{n}": np.asarray(f[layer][n]) for n in names})
        np.savez(case_dir / "reference.npz", **arrays)
        versions = {
            "transformers": transformers.__version__,
            "tensorflow": __import__("tensorflow").__version__,
            "tf_keras": __import__("tf_keras").__version__,
        }
        (case_dir / "reference.json").write_text(json.dumps({"h5_layers": layers, "versions": versions}))
        print(f"reference ran {case_dir.name}")


# ---------------------------------------------------------------------------------------------------
# In the project's .venv
# ---------------------------------------------------------------------------------------------------


def run_reference(work: Path) -> None:
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "src"))
    from _helpers import perturb_state_dict
    from swiftformer import SwiftFormerConfig, SwiftFormerForImageClassification

    if not REF_PYTHON.exists():
        raise SystemExit(f"{REF_PYTHON} not found: create the reference venv first (see this script's docstring)")
    for name, (config_kwargs, input_shape) in CASES.items():
        case_dir = work / name
        torch.manual_seed(0)
        model = SwiftFormerForImageClassification(SwiftFormerConfig(**config_kwargs)).eval()
        model.load_state_dict(perturb_state_dict(model.state_dict(), seed=len(name)))
        model.save_pretrained(case_dir / "pt")
        pixel_values = torch.randn(input_shape, generator=torch.Generator().manual_seed(1)).numpy()
        np.save(case_dir / "input.npy", pixel_values)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("KERAS_BACKEND", None)
    subprocess.run([str(REF_PYTHON), __file__, "--reference-worker", str(work)], check=True, env=env)


def fixture_tensors(work: Path, name: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors.numpy import load_file

    case_dir = work / name
    tensors = {"input": np.load(case_dir / "input.npy")}
    tensors.update({f"weights.{k}": v for k, v in load_file(case_dir / "pt" / "model.safetensors").items()})
    with np.load(case_dir / "reference.npz") as ref:
        tensors.update({k: ref[k] for k in ref.files})
    info = json.loads((case_dir / "reference.json").read_text())
    metadata = {
        "config": json.dumps(CASES[name][0]),
        "h5_layers": json.dumps(info["h5_layers"]),
        "reference": json.dumps(info["versions"]),
    }
    return tensors, metadata


def compare(tensors: dict[str, np.ndarray], metadata: dict[str, str], label: str) -> list[str]:
    """This library's Keras model (weights by PyTorch name, and via the rebuilt tf_model.h5) vs the reference."""
    sys.path.insert(0, str(ROOT / "src"))
    from swiftformer import SwiftFormerConfig
    from swiftformer.keras import TFSwiftFormerForImageClassification

    config = SwiftFormerConfig(**json.loads(metadata["config"]))
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_reference_h5_folder(tensors, metadata, Path(tmp))
        models = {
            "PyTorch-named weights": _with_state(TFSwiftFormerForImageClassification(config), tensors),
            "reference tf_model.h5": TFSwiftFormerForImageClassification.from_pretrained(folder),
        }
        for how, model in models.items():
            out = model(tensors["input"], output_hidden_states=True)
            pairs = [("logits", out.logits)] + [(f"hidden_states.{i}", h) for i, h in enumerate(out.hidden_states)]
            if len(out.hidden_states) != sum(k.startswith("hidden_states.") for k in tensors):
                failures.append(f"{label} [{how}]: {len(out.hidden_states)} hidden states")
            worst = 0.0
            for key, value in pairs:
                expected = tensors[key]
                rel = float(np.abs(np.asarray(value) - expected).max() / np.abs(expected).max())
                worst = max(worst, rel)
                if not rel <= REL_TOL:
                    failures.append(f"{label} [{how}] {key}: rel diff {rel:.3g} > {REL_TOL:g}")
            print(f"{label} [{how}]: worst rel diff {worst:.2e} over logits and {len(pairs) - 1} hidden states")
    return failures


def _with_state(model, tensors):
    model.load_state_dict({k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")})
    return model


def write_reference_h5_folder(tensors: dict[str, np.ndarray], metadata: dict[str, str], folder: Path) -> Path:
    """Rebuild the reference's ``tf_model.h5`` (Keras 2 layout: ``layer_names``, per-layer ``weight_names``)
    plus ``config.json`` in ``folder``, from a fixture."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    layers = json.loads(metadata["h5_layers"])
    with h5py.File(folder / "tf_model.h5", "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.21.0"
        for layer, names in layers.items():
            group = f.create_group(layer)
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n in names:
                group.create_dataset(n, data=tensors[f"h5.{layer}/{n}"])
    (folder / "config.json").write_text(json.dumps({**json.loads(metadata["config"]), "model_type": "swiftformer"}))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare with the committed fixtures")
    mode.add_argument("--live", action="store_true", help="run the reference now and compare; write nothing")
    mode.add_argument("--reference-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.reference_worker:
        reference_worker(args.reference_worker)
        return

    failures: list[str] = []
    if args.check:
        from safetensors import safe_open

        paths = sorted(FIXTURES.glob("tf_golden_*.safetensors"))
        if not paths:
            raise SystemExit("no tf_golden_*.safetensors fixtures")
        for path in paths:
            with safe_open(path, "np") as f:
                metadata = f.metadata()
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
            failures += compare(tensors, metadata, path.stem)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            run_reference(work)
            for name in CASES:
                tensors, metadata = fixture_tensors(work, name)
                if args.live:
                    failures += compare(tensors, metadata, f"live:{name}")
                else:
                    from safetensors.numpy import save_file

                    FIXTURES.mkdir(parents=True, exist_ok=True)
                    target = FIXTURES / f"tf_golden_{name}.safetensors"
                    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, target, metadata=metadata)
                    print(f"wrote {target.relative_to(ROOT)} ({target.stat().st_size / 1024:.0f} KiB)")
                    failures += compare(tensors, metadata, name)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        raise SystemExit(1)
    print("all comparisons within", REL_TOL)


if __name__ == "__main__":
    main()
