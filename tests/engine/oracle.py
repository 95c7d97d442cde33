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


def engine_greedy(path, prompts: list[list[int]], new_tokens: int, **kw) -> list[list[int]]:
    """onenode's greedy tokens in fp32, eos ignored; `kw` are engine arguments (a small CPU KV
    cache unless told)."""
    from engine import LLM, SamplingParams

    kw.setdefault("kv_cache_space_gib", None if kw.get("device") == "cuda" else 0.05)
    llm = LLM(str(path), dtype="float32", **kw)
    try:
        outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=new_tokens,
                                                    ignore_eos=True), use_tqdm=False)
        return [o.outputs[0].token_ids for o in outs]
    finally:
        llm.shutdown()


# bf16 is judged by a criterion, not by token equality: fused GEMMs and the Triton decode round
# differently from cuBLAS and SDPA, so a near-tie argmax may flip (and, decoded greedily, change
# every later token). Each engine token is checked against HF's logits at the same position,
# given the engine's own prefix (teacher forcing), and must be HF's top-1 wherever HF's top-1
# leads its top-2 by more than MARGIN standard deviations of that position's logits. On the tiny
# models, bf16 flips happen below 0.015 std; a decode that drops each context's newest key
# disagrees at leads up to 0.6 std (tests/engine/test_oracle.py).
MARGIN = 0.05


@torch.inference_mode()
def hf_teacher_logits(path, prompt: list[int], tokens: list[int], dtype=torch.float32,
                      device: str = "cpu", model=None) -> torch.Tensor:
    """HF's fp32 logits [len(tokens), vocab] predicting each of `tokens` after `prompt` and the
    tokens before it (one forward pass)."""
    from transformers import AutoModelForCausalLM

    if model is None:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval().to(device)
    ids = torch.tensor([prompt + tokens[:-1]], device=device)
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
    return logits[len(prompt) - 1:].float().cpu()


def margin_disagreements(logits: torch.Tensor, tokens: list[int],
                         margin: float = MARGIN) -> tuple[list[int], int]:
    """(positions where `tokens` is not the top-1 of a decisive row, number of decisive rows).
    A row is decisive when its top-1 leads its top-2 by more than `margin` x the row's std."""
    top = logits.topk(2, dim=-1)
    lead = (top.values[:, 0] - top.values[:, 1]) / logits.std(dim=-1)
    decisive = lead > margin
    wrong = top.indices[:, 0] != torch.tensor(tokens)
    return (decisive & wrong).nonzero().flatten().tolist(), int(decisive.sum())


def check_by_margin(path, prompts: list[list[int]], outputs: list[list[int]], dtype=torch.float32,
                    device: str = "cpu", margin: float = MARGIN) -> tuple[list[str], int]:
    """(one line per disagreement at a decisive position, decisive positions checked) for the
    engine's greedy `outputs`, HF being the teacher in `dtype` on `device`."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval().to(device)
    problems, checked = [], 0
    for i, (prompt, tokens) in enumerate(zip(prompts, outputs)):
        logits = hf_teacher_logits(path, prompt, tokens, dtype, device, model)
        wrong, decisive = margin_disagreements(logits, tokens, margin)
        checked += decisive
        problems += [f"prompt {i} step {p}: engine {tokens[p]}, HF {int(logits[p].argmax())}"
                     for p in wrong]
    return problems, checked


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
