"""A tiny Llama with random weights for tests that need several engines: starts and swaps in seconds.

It borrows the bundled model's tokenizer and chat template (so the gateway's model id, chat
template and token limits work as for the real one); its weights are random with a large init,
so greedy next tokens are far apart in logit and replies are reproducible across batch
shapes. Its replies are gibberish, but each version's replies differ from every other's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
    "chat_template.jinja",
)


def write_tiny_model(out_dir: Path, tokenizer_from: Path, *, seed: int = 0, init: float = 0.5) -> Path:
    """A 2-layer, 128-wide Llama (head_dim 64: the CPU attention kernels need it) in ``out_dir`` (safetensors + config + ``tokenizer_from``'s tokenizer)."""
    import torch
    from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    source = AutoConfig.from_pretrained(tokenizer_from)
    config = LlamaConfig(
        vocab_size=source.vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=source.bos_token_id,
        eos_token_id=source.eos_token_id,
        initializer_range=init,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (tokenizer_from / name).exists():
            shutil.copy2(tokenizer_from / name, out_dir / name)
    return out_dir
