from engine.executor.ray_env import forwarded_env, ip_mismatches


def test_forwarded_env_keeps_cluster_settings_but_not_node_ip_or_secrets():
    env = {"NCCL_SOCKET_IFNAME": "eth0", "GLOO_SOCKET_IFNAME": "eth0", "VLLM_HOST_IP": "10.0.0.1",
           "HF_HOME": "/hf", "HF_TOKEN": "hf_secret", "ONENODE_PP_LAYER_PARTITION": "1,1",
           "PATH": "/bin", "VLLM_API_KEY": "k"}
    assert forwarded_env(env) == {"NCCL_SOCKET_IFNAME": "eth0", "GLOO_SOCKET_IFNAME": "eth0",
                                  "HF_HOME": "/hf", "ONENODE_PP_LAYER_PARTITION": "1,1"}


def test_ip_mismatch_names_the_fix():
    infos = [{"rank": 0, "hostname": "a", "vllm_host_ip": "10.0.0.1", "ray_ip": "10.0.0.1"},
             {"rank": 1, "hostname": "b", "vllm_host_ip": "10.0.0.9", "ray_ip": "10.0.0.2"},
             {"rank": 2, "hostname": "c", "vllm_host_ip": None, "ray_ip": "10.0.0.3"}]
    bad = ip_mismatches(infos)
    assert len(bad) == 1
    assert "VLLM_HOST_IP=10.0.0.9" in bad[0] and "-e VLLM_HOST_IP=10.0.0.2" in bad[0]
