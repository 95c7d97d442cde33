import pytest

from engine.executor.select import select_backend


@pytest.mark.parametrize("requested,world,in_pg,local,expected", [
    (None, 1, False, 8, "uni"),
    (None, 1, True, 8, "uni"),
    (None, 4, True, 8, "ray"),      # already inside a Ray placement group
    (None, 4, False, 8, "mp"),      # enough devices on this node
    (None, 4, False, 4, "mp"),
    (None, 16, False, 8, "ray"),    # more ranks than local devices: the cluster
    ("mp", 16, False, 8, "mp"),     # explicit override wins
    ("ray", 2, False, 8, "ray"),
    ("uni", 1, True, 1, "uni"),
])
def test_default_rule(requested, world, in_pg, local, expected):
    assert select_backend(requested, world, in_pg, local) == expected


def test_mp_path_does_not_import_ray():
    import subprocess
    import sys

    code = ("import sys; from engine.executor.select import in_ray_placement_group;"
            "assert in_ray_placement_group() is False; assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
