"""healthcheck.verbs: the RDMA devices verbs can open, read from fixture sysfs and /dev trees."""

from healthcheck import verbs


def _device(root, uverbs: str, ibdev: str, link_layer: str = "InfiniBand", dev_node=True):
    sysfs, dev, ib = root / "verbs", root / "dev", root / "ib"
    (sysfs / uverbs).mkdir(parents=True)
    (sysfs / uverbs / "ibdev").write_text(ibdev + "\n")
    port = ib / ibdev / "ports" / "1"
    port.mkdir(parents=True)
    (port / "link_layer").write_text(link_layer + "\n")
    dev.mkdir(exist_ok=True)
    if dev_node:
        (dev / uverbs).write_text("")  # a char device on a real node; presence is what counts
    return str(sysfs), str(dev), str(ib)


def test_lists_each_verbs_device_with_its_link_layer_and_dev_node(tmp_path):
    _device(tmp_path, "uverbs0", "mlx5_0")
    sysfs, dev, ib = _device(tmp_path, "uverbs1", "mlx5_1", "Ethernet", dev_node=False)
    assert verbs.verbs_devices(sysfs, dev, ib) == [
        {"device": "mlx5_0", "uverbs": "uverbs0", "open": True, "link_layer": "InfiniBand"},
        {"device": "mlx5_1", "uverbs": "uverbs1", "open": False, "link_layer": "Ethernet"}]


def test_no_rdma_hardware_is_an_empty_list(tmp_path):
    assert verbs.verbs_devices(str(tmp_path / "none"), str(tmp_path), str(tmp_path)) == []
    (tmp_path / "uverbs0").mkdir()  # an entry without ibdev (racing a hot-unplug) is skipped
    assert verbs.verbs_devices(str(tmp_path), str(tmp_path), str(tmp_path)) == []


def test_has_libibverbs_answers_a_bool():
    assert isinstance(verbs.has_libibverbs(), bool)
