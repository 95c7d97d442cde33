import pytest

from onenode.errors import ConfigError
from onenode.units import human_bytes, parse_bytes, parse_sizes


# Docker's convention (go-units RAMInBytes): every unit is binary, `b` and `ib` are optional.
@pytest.mark.parametrize("text, value", [
    ("80GiB", 80 << 30), ("80G", 80 << 30), ("80GB", 80 << 30), ("80gb", 80 << 30),
    ("1GB", 1 << 30), ("1g", 1 << 30), ("16M", 16 << 20), ("512mb", 512 << 20),
    ("1024k", 1 << 20), ("2KiB", 2048), ("1.5GiB", 3 << 29), ("512", 512), ("512b", 512),
    ("81920MiB", 80 << 30), ("10.24g", int(10.24 * (1 << 30))), ("1t", 1 << 40),
    (" 2 g ", 2 << 30),
])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


def test_bare_number_takes_the_default_unit():
    assert parse_bytes("24", "GiB") == 24 << 30
    assert parse_bytes("24m", "GiB") == 24 << 20


@pytest.mark.parametrize("text", ["", "lots", "12XB", "-1G", "1ib", "1.2.3g", "g"])
def test_bad_sizes_name_the_format(text):
    with pytest.raises(ConfigError, match="like 80GiB"):
        parse_bytes(text)


def test_error_names_the_flag():
    with pytest.raises(ConfigError, match="^--shm-size 'big' is not a size"):
        parse_bytes("big", flag="--shm-size")


def test_parse_sizes_sorted_unique():
    assert parse_sizes("128M,1M,16M,1M") == [1 << 20, 16 << 20, 128 << 20]
    with pytest.raises(ConfigError, match="--sizes"):
        parse_sizes("2")


def test_human_bytes():
    assert human_bytes(16 << 20) == "16 MiB" and human_bytes(1.5 * (1 << 30)) == "1.50 GiB"
    assert human_bytes(100) == "100 B"
