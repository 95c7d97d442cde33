"""Default sampling values from the model's generation_config.json (vLLM's
`--generation-config auto`): what the model's authors recommend, used when a request leaves a
field unset. `vllm` means onenode's own defaults; anything else is a directory holding the file.
"""

import json
from pathlib import Path

from onenode.errors import ConfigError

# generation_config.json key -> SamplingParams field (vLLM's mapping).
KEYS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
        "repetition_penalty": "repetition_penalty", "max_new_tokens": "max_tokens"}


def default_sampling_values(setting: str, model_dir: Path) -> dict:
    """Field -> default value; empty when there is no file or it sets none of KEYS."""
    if setting == "vllm":
        return {}
    directory = model_dir if setting == "auto" else Path(setting).expanduser()
    if setting != "auto" and not directory.is_dir():
        raise ConfigError(f"generation_config={setting!r} is not a directory; use 'auto', "
                          f"'vllm' or a directory holding generation_config.json")
    path = directory / "generation_config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; fix the file or pass "
                          f"--generation-config vllm") from None
    values = {field: data[key] for key, field in KEYS.items() if data.get(key) is not None}
    if values.get("top_k") == 0:
        values["top_k"] = -1  # HF's "off"
    return values
