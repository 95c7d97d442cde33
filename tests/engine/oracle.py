"""HF transformers as the oracle for greedy decoding (shared by engine tests)."""

import random

import torch


def make_prompts(path, lengths, seed: int = 0) -> list[list[int]]:
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(str(path)).vocab_size
    rng = random.Random(seed + sum(lengths))
    return [[rng.randrange(3, vocab) for _ in range(n)] for n in lengths]


@torch.inference_mode()
def hf_greedy(path, prompts: list[list[int]], new_tokens: int, gguf_file=None,
              dtype: torch.dtype = torch.float32, device: str = "cpu") -> list[list[int]]:
    """One prompt at a time (no padding effects), fp32 unless told, eos ignored."""
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kwargs).eval()
    model.to(device)
    # ignore_eos means "do not stop at EOS", not "never emit EOS" (which min_new_tokens does).
    model.generation_config.eos_token_id = None
    outs = []
    for prompt in prompts:
        ids = torch.tensor([prompt], device=device)
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             do_sample=False, pad_token_id=0)
        outs.append(gen[0, len(prompt):].tolist())
    return outs
