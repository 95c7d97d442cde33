"""onenode's inference engine: `from engine import LLM, SamplingParams`.

Imports are lazy so that the engine's pure modules (the planner, the rank grid, KV sizing), which
`onenode plan` and the healthcheck use on hosts, import without torch.
"""

__all__ = ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput",
           "StructuredOutputsParams", "GuidedDecodingParams"]
__version__ = "0.1.0"


def __getattr__(name):
    if name == "LLM":
        from engine.entrypoints.llm import LLM

        return LLM
    if name == "SamplingParams":
        from engine.sampling_params import SamplingParams

        return SamplingParams
    if name in ("StructuredOutputsParams", "GuidedDecodingParams"):
        from engine import structured_outputs

        return getattr(structured_outputs, name)
    if name in ("RequestOutput", "CompletionOutput"):
        from engine import outputs

        return getattr(outputs, name)
    raise AttributeError(name)
