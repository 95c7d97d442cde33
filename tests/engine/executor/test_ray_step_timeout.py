"""The ray executor's step timeout (pure): derived from the model and the batch, overridable."""

from engine.executor.ray import step_timeout_s


def test_grows_with_model_and_batch_and_is_faster_on_gpu():
    small = step_timeout_s(135_000_000, 1, "CPU")
    assert 60 < small < 61
    assert step_timeout_s(135_000_000, 2048, "CPU") > small + 50
    assert step_timeout_s(70_000_000_000, 8192, "GPU") < step_timeout_s(70_000_000_000, 8192,
                                                                          "CPU")


def test_env_overrides(monkeypatch):
    monkeypatch.setenv("ONENODE_STEP_TIMEOUT_S", "7")
    assert step_timeout_s(10**9, 4096, "CPU") == 7.0
