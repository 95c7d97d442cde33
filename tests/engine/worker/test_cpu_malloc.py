"""malloc tuning for CPU engines: taken once on glibc, left alone with the fast paths off."""

import platform

import pytest

from engine.worker import cpu_malloc


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(cpu_malloc, "_done", False)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_both_settings_once():
    assert cpu_malloc.keep_freed_memory() is True
    assert cpu_malloc.keep_freed_memory() is True  # idempotent


def test_cpu_kernels_off_leaves_malloc_alone(monkeypatch):
    monkeypatch.setenv("ONENODE_CPU_KERNELS", "0")
    assert cpu_malloc.keep_freed_memory() is False
