"""A full-size InfiniteTalk model directory of random weights, in the published layout and formats.

The generator loads it through the same loaders as the real weights (itk_generator.infinitetalk
.weights), so a benchmark of the whole service measures real loading, memory and speed without
the 40+ GB download. Sizes: the 14B DiT (Wan2.1 I2V, seven bf16 safetensors shards and their index,
plus the InfiniteTalk audio adapter), the Wan VAE (fp32 .pth), umT5-XXL's encoder (bf16 .pth, 24
layers of 4096), CLIP ViT-H/14 (fp16 .pth, 32 blocks) and chinese-wav2vec2-base (safetensors).
The tokenizers are small stand-ins (the real ones are data, not weights). Random values of sane
scale (as bench/gpu_infinitetalk.py draws them) keep every activation finite. Nothing is
downloaded; the files are written where asked and never belong in the repository.

    python bench/random_model.py OUT_DIR [--tiny]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "services/generator/src"), str(ROOT / "common/src"), str(ROOT / "common/generated")]

from itk_generator.infinitetalk import clip_vision, text_encoder, tiny  # noqa: E402
from itk_generator.infinitetalk.config import DiTConfig  # noqa: E402
from itk_generator.infinitetalk.dit import InfiniteTalkDiT  # noqa: E402
from itk_generator.infinitetalk.download import DIT_SHARDS, WAV2VEC_DIR  # noqa: E402
from itk_generator.infinitetalk.vae import VAEShape, to_original_keys  # noqa: E402

FULL_VAE = VAEShape(base_dim=96, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
                    temporal_downsample=(False, True, True))
MARKER = "random-weights.json"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _fill(name: str, tensor: torch.Tensor, dim: int) -> None:
    """bench/gpu_infinitetalk.py's draws: unit norms, small biases, 1/sqrt(fan-in) matrices."""
    if name.endswith("modulation"):
        tensor.normal_(0, 1 / math.sqrt(dim))
    elif tensor.ndim == 1 and "norm" in name and name.endswith("weight"):
        tensor.fill_(1.0)
    elif tensor.ndim == 1:
        tensor.normal_(0, 0.02)
    else:
        tensor.normal_(0, 1 / math.sqrt(max(1, math.prod(tensor.shape[1:]))))


def write_dit(root: Path, config: DiTConfig, device: torch.device) -> None:
    from safetensors.torch import save_file

    with torch.device("meta"):
        model = InfiniteTalkDiT(config)
    shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
    adapter_names = set(model.adapter_keys())
    del model

    def draw(names: list[str]) -> dict[str, torch.Tensor]:
        out = {}
        for name in names:
            tensor = torch.empty(shapes[name], dtype=torch.bfloat16, device=device)
            _fill(name, tensor, config.dim)
            out[name] = tensor.cpu()
        return out

    save_file(draw(sorted(adapter_names)), tiny._path(root, "single"), {"format": "pt"})
    base = sorted(set(shapes) - adapter_names)
    per_shard = -(-len(base) // len(DIT_SHARDS))
    weight_map: dict[str, str] = {}
    for i, shard_name in enumerate(DIT_SHARDS):
        names = base[i * per_shard:(i + 1) * per_shard]
        save_file(draw(names), tiny._path(root, f"dit_shard_{i + 1}"), {"format": "pt"})
        weight_map.update(dict.fromkeys(names, shard_name))
    total = sum(math.prod(shapes[name]) * 2 for name in base)
    tiny._path(root, "dit_index").write_text(json.dumps({"metadata": {"total_size": total},
                                                         "weight_map": weight_map}, indent=2))
    written = {"_class_name": "WanModel", **dataclasses.asdict(config)}
    written["patch_size"] = list(config.patch_size)
    tiny._path(root, "dit_config").write_text(json.dumps(written, indent=2))


def write_text_encoder(root: Path, device: torch.device) -> None:
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = tiny.unigram_tokenizer()
    tokenizer.save_pretrained(str(tiny._path(root, "tokenizer").parent))
    config = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                        feed_forward_proj="gated-gelu", dropout_rate=0.0)
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    state = {}
    for name, tensor in model.state_dict().items():
        drawn = torch.empty(tensor.shape, dtype=torch.bfloat16, device=device)
        drawn.fill_(1.0) if "layer_norm" in name else drawn.normal_(0, 0.02)
        state[name] = drawn.cpu()
    del model
    torch.save(text_encoder.to_wan_keys(state, config.num_layers), tiny._path(root, "t5"))


def write_clip(root: Path) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                              image_size=224, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5)
    state = clip_vision.to_wan_keys(CLIPVisionModel(config).state_dict(), config.num_hidden_layers, 1024)
    torch.save({name: tensor.to(torch.float16) for name, tensor in state.items()}, tiny._path(root, "clip"))


def write_wav2vec(root: Path) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = root / WAV2VEC_DIR
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(str(folder), safe_serialization=True)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(str(folder))


def write_random_model_dir(root: Path, full: bool = True) -> Path:
    """The whole layout under `root`; skipped when a finished one is there already."""
    root = Path(root)
    marker = root / MARKER
    if marker.exists() and json.loads(marker.read_text()).get("full") == full:
        return root
    if not full:
        tiny.build_tiny_model_dir(root)
    else:
        device = _device()
        torch.manual_seed(0)
        for what, write in (("DiT", lambda: write_dit(root, DiTConfig(), device)),
                            ("umT5", lambda: write_text_encoder(root, device)),
                            ("VAE", lambda: torch.save(to_original_keys(FULL_VAE.build().state_dict(), FULL_VAE),
                                                       tiny._path(root, "vae"))),
                            ("CLIP", lambda: write_clip(root)), ("wav2vec2", lambda: write_wav2vec(root))):
            started = time.monotonic()
            write()
            print(f"wrote the random {what} in {time.monotonic() - started:.1f} s", flush=True)
    marker.write_text(json.dumps({"full": full}))
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tiny", action="store_true", help="the tests' toy sizes instead of the full ones")
    args = parser.parse_args()
    print(write_random_model_dir(args.out, full=not args.tiny))
    return 0


if __name__ == "__main__":
    sys.exit(main())
