from cluster.logs import known_secrets


def test_masks_secret_env_and_the_api_key_flag():
    env = {"HF_TOKEN": "hf_abcdef", "PATH": "/usr/bin"}
    config = {"args": ["m", "--api-key", "sk-123456"], "env": {"ONENODE_API_KEY": "sk-999999"}}
    assert sorted(known_secrets(env, config)) == ["hf_abcdef", "sk-123456", "sk-999999"]
    assert known_secrets({}, {"args": ["m", "--api-key=sk-777777"]}) == ["sk-777777"]
    assert known_secrets({"PATH": "/x"}, None) == []
