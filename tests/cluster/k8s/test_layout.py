"""cluster.k8s.layout: a layout that does not fit the pods is refused in one line naming a fix."""

import pytest

from cluster.k8s.layout import K8sLayout
from onenode.errors import ConfigError


def lay(**kw) -> K8sLayout:
    base = dict(model="/m", nodes=2, gpus_per_node=4, tp=4, pp=2)
    return K8sLayout(**{**base, **kw})


@pytest.mark.parametrize("kw", [dict(), dict(tp=8, pp=1), dict(tp=2, pp=4), dict(tp=1, pp=8),
                                dict(nodes=1, gpus_per_node=1, tp=1, pp=1, kind="kuberay")])
def test_layouts_that_use_every_gpu_fit(kw):
    assert lay(**kw).nodes >= 1


@pytest.mark.parametrize("kw, match", [
    (dict(tp=4, pp=1), r"TP 4 x PP 1 = 4 ranks, but 2 pod\(s\) x 4 GPU\(s\) = 8 GPUs.*"
                       r"--pipeline-parallel-size 2"),
    (dict(tp=3, pp=3, gpus_per_node=9, nodes=1, ), None),  # fits: 3 divides 9
    (dict(gpus_per_node=6, nodes=2, tp=4, pp=3), r"--tensor-parallel-size 4 does not divide the "
                                                 r"6 GPUs per pod.*1, 2, 3, 6"),
    (dict(gpus_per_node=4, nodes=3, tp=6, pp=2), r"spans pods unevenly.*TP 4 x PP 3"),
    (dict(kind="helm"), r"--kind 'helm' is not one of lws, kuberay"),
    (dict(nodes=0), r"--nodes must be >= 1"),
    (dict(name="Bad_Name"), r"DNS label"),
    (dict(env=(("1X", "v"),)), r"-e '1X'"),
])
def test_misfits_are_one_line_errors(kw, match):
    if match is None:
        lay(**kw)
        return
    with pytest.raises(ConfigError, match=match) as err:
        lay(**kw)
    assert "\n" not in str(err.value)
