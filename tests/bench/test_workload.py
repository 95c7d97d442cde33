"""Named workload profiles: their shapes and sampling settings, seeded and identical per call."""

import pytest

from bench.workload import PROFILES, profile_workload
from onenode.errors import ConfigError


def test_profiles_have_the_issue_shapes():
    chat = PROFILES["chat"].sampling_kwargs
    assert chat == {"temperature": 0.7, "top_p": 0.9, "top_k": 50}
    assert PROFILES["chat"].output_len[1] == 512
    assert PROFILES["long-prompt"].prompt_len == (2048, 4096)
    assert PROFILES["long-output"].output_len == (1024, 2048)
    pen = PROFILES["penalties"].sampling_kwargs
    assert pen["repetition_penalty"] != 1.0 and pen["frequency_penalty"] > 0
    assert PROFILES["default"].greedy and not PROFILES["chat"].greedy


@pytest.mark.parametrize("name", list(PROFILES))
def test_profile_workloads_are_seeded_and_in_range(name):
    prof, reqs = profile_workload(name, 32000, 5)
    assert reqs == profile_workload(name, 32000, 5)[1] and len(reqs) == 5
    for r in reqs:
        assert prof.prompt_len[0] <= len(r.prompt_token_ids) <= prof.prompt_len[1]
        assert prof.output_len[0] <= r.output_len <= prof.output_len[1]
    assert len(profile_workload(name, 32000)[1]) == prof.num_requests


def test_an_unknown_profile_names_the_known_ones():
    with pytest.raises(ConfigError, match="use one of default, chat"):
        profile_workload("fast", 100)
