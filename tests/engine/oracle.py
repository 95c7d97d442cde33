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


@torch.inference_mode()
def assert_equal_up_to_near_ties(path, prompts, ours, ref, dtype=torch.bfloat16,
                                 ulps: int = 4) -> None:
    """Tokens equal HF's, except that a sequence may leave HF's where HF's own logits for the
    two tokens lie within `ulps` units of `dtype` of each other (a reduction in another order,
    e.g. a TP all-reduce in bf16, may flip such a near-tie); after that the sequences differ by
    construction and are not compared."""
    from transformers import AutoModelForCausalLM

    model = None
    for prompt, mine, theirs in zip(prompts, ours, ref):
        i = next((j for j, (a, b) in enumerate(zip(mine, theirs)) if a != b), None)
        if i is None:
            assert mine == theirs
            continue
        if model is None:
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval()
        logits = model(torch.tensor([prompt + theirs[:i]])).logits[0, -1].float()
        a, b = logits[theirs[i]].item(), logits[mine[i]].item()
        ulp = torch.finfo(dtype).eps * max(abs(a), abs(b))
        assert a - b <= ulps * ulp, (f"token {i}: HF's {theirs[i]} beats {mine[i]} by {a - b:.4g}"
                                     f" (> {ulps} ulps): not a near-tie")
