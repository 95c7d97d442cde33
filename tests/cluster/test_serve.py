from cluster.serve import api_key_to_env, parallel_sizes


def test_api_key_leaves_argv_for_the_env():
    args, env = api_key_to_env(["/m", "--api-key", "sk-1", "-pp", "3"])
    assert args == ["/m", "-pp", "3"] and env == {"ONENODE_API_KEY": "sk-1"}
    assert api_key_to_env(["/m", "--api-key=sk-2"]) == (["/m"], {"ONENODE_API_KEY": "sk-2"})
    assert api_key_to_env(["/m"]) == (["/m"], {})


def test_parallel_sizes_multiplies_tp_and_pp():
    assert parallel_sizes(["-tp", "2", "--pipeline-parallel-size=3"]) == 6
