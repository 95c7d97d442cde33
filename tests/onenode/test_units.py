import pytest

from onenode.errors import ConfigError
from onenode.units import human_bytes, parse_bytes, parse_sizes


@pytest.mark.parametrize("text, value", [
    ("80GiB", 80 << 30), ("80G", 80 << 30), ("80GB", 80 * 10**9), ("16M", 16 << 20),
    ("1.5GiB", 3 << 29), ("512", 512), ("81920MiB", 80 << 30),
])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


def test_bare_number_takes_the_default_unit():
    assert parse_bytes("24", "GiB") == 24 << 30


@pytest.mark.parametrize("text", ["", "lots", "12XB", "-1G"])
def test_bad_sizes_name_the_format(text):
    with pytest.raises(ConfigError, match="like 80GiB"):
        parse_bytes(text)


def test_parse_sizes_sorted_unique():
    assert parse_sizes("128M,1M,16M,1M") == [1 << 20, 16 << 20, 128 << 20]
    with pytest.raises(ConfigError, match="--sizes"):
        parse_sizes("2")


def test_human_bytes():
    assert human_bytes(16 << 20) == "16 MiB" and human_bytes(1.5 * (1 << 30)) == "1.50 GiB"
    assert human_bytes(100) == "100 B"
