"""The umT5-XXL text encoder: Wan's checkpoint loaded into transformers' UMT5EncoderModel.

Wan's own T5 (wan/modules/t5.py) is the umT5 encoder: RMSNorm without bias, unscaled attention
logits, a relative position bias per layer (32 buckets, max distance 128, bidirectional) and a
gated tanh-GELU feed-forward (`fc1(x) * gelu(gate(x))`), which is UMT5's `wi_1(x) * gelu_new(wi_0(x))`.
"""

from __future__ import annotations

import html
from pathlib import Path

import ftfy
import regex as re
import torch
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

from .weights import WeightsError, check_state_dict, read_torch_file

TEXT_LEN = 512
_BLOCK_NAMES = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}


def clean_prompt(text: str) -> str:
    """Wan's 'whitespace' cleaning: fix mojibake, unescape HTML twice, collapse whitespace."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


def infer_config(state: dict[str, torch.Tensor]) -> UMT5Config:
    try:
        vocab, dim = state["token_embedding.weight"].shape
        buckets, heads = state["blocks.0.pos_embedding.embedding.weight"].shape
        dim_attn = state["blocks.0.attn.q.weight"].shape[0]
        dim_ffn = state["blocks.0.ffn.fc1.weight"].shape[0]
    except KeyError as err:
        raise WeightsError(f"not a Wan umT5 encoder checkpoint: no {err.args[0]}") from err
    layers = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    return UMT5Config(
        vocab_size=vocab, d_model=dim, d_kv=dim_attn // heads, d_ff=dim_ffn, num_layers=layers,
        num_heads=heads, relative_attention_num_buckets=buckets, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0,
    )


def to_hf_keys(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Wan's T5 encoder names -> UMT5EncoderModel names (the embedding is shared, as UMT5 ties it)."""
    expected = {"token_embedding.weight", "norm.weight"}
    expected |= {f"blocks.{i}.{name}" for i in range(num_layers) for name in _BLOCK_NAMES}
    check_state_dict(expected, set(state), what="umT5 encoder checkpoint")
    out = {
        "shared.weight": state["token_embedding.weight"],
        "encoder.embed_tokens.weight": state["token_embedding.weight"],
        "encoder.final_layer_norm.weight": state["norm.weight"],
    }
    for i in range(num_layers):
        out.update({f"encoder.block.{i}.{new}": state[f"blocks.{i}.{old}"] for old, new in _BLOCK_NAMES.items()})
    return out


def to_wan_keys(hf_state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """UMT5EncoderModel names -> Wan's names (the inverse of `to_hf_keys`; used to write test files)."""
    out = {"token_embedding.weight": hf_state["shared.weight"],
           "norm.weight": hf_state["encoder.final_layer_norm.weight"]}
    for i in range(num_layers):
        out.update({f"blocks.{i}.{old}": hf_state[f"encoder.block.{i}.{new}"] for old, new in _BLOCK_NAMES.items()})
    return out


class TextEncoder:
    """Prompts -> per-prompt umT5 embeddings trimmed to their token count ([len_i, dim] each)."""

    def __init__(self, model: UMT5EncoderModel, tokenizer, device: torch.device, text_len: int = TEXT_LEN) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.device = device
        self.text_len = text_len

    @classmethod
    def load(cls, pth_path: Path, tokenizer_dir: Path, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.bfloat16) -> TextEncoder:
        path = Path(pth_path)
        state = read_torch_file(path)
        config = infer_config(state)
        with torch.device("meta"):  # no random init of billions of parameters: all come from the file
            model = UMT5EncoderModel(config)
        try:
            model.load_state_dict(to_hf_keys(state, config.num_layers), strict=True, assign=True)
        except (RuntimeError, WeightsError) as err:
            raise WeightsError(f"{path}: {err}") from err
        model.tie_weights()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        except (OSError, ValueError) as err:
            raise WeightsError(f"cannot load the umT5 tokenizer from {tokenizer_dir}: {err}") from err
        device = torch.device(device)
        return cls(model.to(device=device, dtype=dtype), tokenizer, device)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> list[torch.Tensor]:
        batch = self.tokenizer(
            [clean_prompt(text) for text in texts], padding="max_length", truncation=True,
            max_length=self.text_len, add_special_tokens=True, return_tensors="pt",
        )
        ids = batch.input_ids.to(self.device)
        mask = batch.attention_mask.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return [row[:length] for row, length in zip(hidden, mask.sum(dim=1).tolist(), strict=True)]
