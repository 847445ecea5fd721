"""A tiny InfiniteTalk model directory: every file of the real layout, in the real formats, with
random weights at toy sizes (a few MB, built in seconds). Tests and the end-to-end run use it.

    python -m itk_generator.infinitetalk.tiny OUT_DIR
"""

from __future__ import annotations

import dataclasses
import json
import string
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    PreTrainedTokenizerFast,
    UMT5Config,
    UMT5EncoderModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

from . import clip_vision, text_encoder
from .config import DiTConfig
from .dit import InfiniteTalkDiT
from .download import ADAPTERS, DIT_SHARDS, REQUIRED_FILES, WAV2VEC_DIR
from .vae import VAEShape, to_original_keys

T5_DIM = 32
CLIP_DIM = clip_vision.HEAD_DIM  # one 80-wide head
WAV2VEC_DIM = 32
WAV2VEC_LAYERS = 12  # the recipe stacks hidden states 1..12

TINY_DIT = DiTConfig(
    dim=32, ffn_dim=64, freq_dim=32, num_heads=2, num_layers=2, text_dim=T5_DIM, clip_dim=CLIP_DIM,
    audio_layers=WAV2VEC_LAYERS, audio_channels=WAV2VEC_DIM, audio_intermediate_dim=32,
    audio_output_dim=32, audio_context_tokens=4,
)
TINY_VAE = VAEShape(base_dim=4, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
                    temporal_downsample=(False, True, True))
TINY_CLIP = CLIPVisionConfig(
    hidden_size=CLIP_DIM, intermediate_size=4 * CLIP_DIM, num_hidden_layers=3, num_attention_heads=1,
    image_size=224, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5,
)
TINY_WAV2VEC = Wav2Vec2Config(
    hidden_size=WAV2VEC_DIM, num_hidden_layers=WAV2VEC_LAYERS, num_attention_heads=2, intermediate_size=64,
    conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    feat_extract_norm="group", do_stable_layer_norm=False,
)
_WORDS = ["a", "the", "person", "is", "talking", "to", "camera", "man", "woman", "speaking"]


def _path(root: Path, name: str) -> Path:
    path = root / (ADAPTERS[name] if name in ADAPTERS else REQUIRED_FILES[name]).local_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_dit(root: Path) -> None:
    model = InfiniteTalkDiT(TINY_DIT)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    adapter_names = set(model.adapter_keys())
    save_file({name: state[name] for name in sorted(adapter_names)}, _path(root, "single"), {"format": "pt"})
    # The multi-person adapter: the same tensors, other random values (drawn aside, so the other
    # files keep the values they have without it).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        multi = InfiniteTalkDiT(TINY_DIT).state_dict()
    save_file({name: multi[name].contiguous() for name in sorted(adapter_names)}, _path(root, "multi"),
              {"format": "pt"})

    base = sorted(set(state) - adapter_names)
    per_shard = -(-len(base) // len(DIT_SHARDS))
    weight_map = {}
    for i, shard_name in enumerate(DIT_SHARDS):
        names = base[i * per_shard:(i + 1) * per_shard]
        save_file({name: state[name] for name in names}, _path(root, f"dit_shard_{i + 1}"), {"format": "pt"})
        weight_map.update(dict.fromkeys(names, shard_name))
    total = sum(state[name].numel() * state[name].element_size() for name in base)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    _path(root, "dit_index").write_text(json.dumps(index, indent=2))

    # Wan's keys plus the adapter sizes, which the published config.json does not need to state.
    config = {"_class_name": "WanModel", **dataclasses.asdict(TINY_DIT)}
    config["patch_size"] = list(TINY_DIT.patch_size)
    _path(root, "dit_config").write_text(json.dumps(config, indent=2))


def _write_vae(root: Path) -> None:
    torch.save(to_original_keys(TINY_VAE.build().state_dict(), TINY_VAE), _path(root, "vae"))


def unigram_tokenizer() -> PreTrainedTokenizerFast:
    """A real Unigram (sentencepiece-style) tokenizer with umT5's special ids: pad 0, eos 1, unk 2."""
    pieces = ["<pad>", "</s>", "<unk>", "\u2581", *(f"\u2581{word}" for word in _WORDS)]
    pieces += list(string.ascii_letters + string.digits + string.punctuation)
    vocab = [(piece, 0.0 if i < 3 else -1.0 - i / 10) for i, piece in enumerate(pieces)]
    backend = Tokenizer(models.Unigram(vocab, unk_id=2))
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=512)


def _write_text_encoder(root: Path) -> None:
    tokenizer = unigram_tokenizer()
    tokenizer.save_pretrained(str(_path(root, "tokenizer").parent))
    config = UMT5Config(
        vocab_size=len(tokenizer), d_model=T5_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", dropout_rate=0.0,
    )
    model = UMT5EncoderModel(config)
    state = text_encoder.to_wan_keys(model.state_dict(), config.num_layers)
    torch.save({name: tensor.to(torch.bfloat16) for name, tensor in state.items()}, _path(root, "t5"))


def _write_clip(root: Path) -> None:
    state = clip_vision.to_wan_keys(CLIPVisionModel(TINY_CLIP).state_dict(), TINY_CLIP.num_hidden_layers, 16)
    state["log_scale"] = torch.zeros(())  # a text-side tensor: the loader must ignore it
    torch.save({name: tensor.to(torch.float16) for name, tensor in state.items()}, _path(root, "clip"))


def _write_wav2vec(root: Path) -> None:
    folder = root / WAV2VEC_DIR
    Wav2Vec2Model(TINY_WAV2VEC).save_pretrained(str(folder), safe_serialization=True)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(str(folder))


def build_tiny_model_dir(root: Path, seed: int = 0) -> Path:
    """Write the whole layout under `root` (created if needed) and return `root`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for write in (_write_dit, _write_vae, _write_text_encoder, _write_clip, _write_wav2vec):
            write(root)
    return root


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m itk_generator.infinitetalk.tiny OUT_DIR", file=sys.stderr)
        return 2
    print(build_tiny_model_dir(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
