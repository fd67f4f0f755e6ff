"""Regenerate tests/fixtures/golden_*.safetensors from transformers' SwiftFormer (the reference).

Each fixture holds a small config (as JSON metadata), perturbed weights under ``weights.<key>``, an
input, and the reference's logits and hidden states, so the parity tests also run where
transformers is not installed. Run: ``make fixtures`` (or ``python scripts/make_golden_fixtures.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _helpers import perturb_state_dict

TINY = {"depths": [2, 1, 2, 1], "embed_dims": [8, 12, 16, 24], "num_labels": 5}
CASES = {
    "tiny_default": ({**TINY}, (2, 3, 32, 24)),
    "tiny_relu_no_layer_scale": (
        {
            **TINY,
            "hidden_act": "relu",
            "use_layer_scale": False,
            "mlp_ratio": 3,
            "embed_dims": [8, 8, 16, 16],
            "downsamples": [False, True, False, True],
        },
        (2, 3, 20, 28),
    ),
    "tiny_gelu_new_odd": ({**TINY, "hidden_act": "gelu_new", "down_patch_size": 5, "down_pad": 2}, (3, 3, 19, 15)),
}


def main() -> None:
    out_dir = ROOT / "tests" / "fixtures"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (config_kwargs, input_shape) in CASES.items():
        config = transformers.SwiftFormerConfig(**config_kwargs)
        model = transformers.SwiftFormerForImageClassification(config).eval()
        weights = perturb_state_dict(model.state_dict(), seed=len(name))
        model.load_state_dict(weights)
        pixel_values = torch.randn(input_shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out = model(pixel_values, output_hidden_states=True)
        tensors = {f"weights.{k}": v.contiguous() for k, v in weights.items()}
        tensors["input"] = pixel_values
        tensors["logits"] = out.logits
        tensors.update({f"hidden_states.{i}": h.contiguous() for i, h in enumerate(out.hidden_states)})
        metadata = {"config": json.dumps(config_kwargs), "transformers_version": transformers.__version__}
        save_file(tensors, out_dir / f"golden_{name}.safetensors", metadata=metadata)
        print(f"wrote {name}: {sum(v.numel() for v in tensors.values())} values")


if __name__ == "__main__":
    # no options: parsing still answers --help instead of regenerating the fixtures
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
