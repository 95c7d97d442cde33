import pytest

from cluster.args import OPTIONS, help_text, parse_run_cluster, wants_help
from onenode.errors import ConfigError

BASE = ["img", "10.0.0.1", "--head", "/hf"]


def test_help_lists_every_option():
    text = help_text()
    for opt in OPTIONS:
        for name in opt.names:
            assert name in text
    assert text.startswith("usage: run_cluster IMAGE HEAD_IP --head|--worker HF_HOME")
    assert wants_help(["--help"]) and wants_help(BASE + ["-h"]) and not wants_help(BASE)


@pytest.mark.parametrize("argv", [
    ["--ipc", "host", "--pid", "host", "-p", "8000:8000", "--restart", "no", "-m", "1g"],
    ["--ipc=host", "--pid=host", "--publish=8000:8000", "--restart=no", "--memory=1g"],
])
def test_space_and_equals_forms_are_the_same(argv):
    args = parse_run_cluster(BASE + argv)
    assert (args.ipc, args.pid, args.publish, args.restart, args.memory) == \
        ("host", "host", ["8000:8000"], "no", "1g")


def test_docker_shorthand_forms():
    args = parse_run_cluster(BASE + ["-eA=1", "-e=B=2", "-e", "C", "-v/a:/b", "-u0", "-w/x"])
    assert args.env == ["A=1", "B=2", "C"] and args.volumes == ["/a:/b"]
    assert (args.user, args.workdir) == ("0", "/x")


def test_repeatable_options_accumulate_and_single_ones_take_the_last():
    args = parse_run_cluster(BASE + ["--security-opt", "a=1", "--security-opt", "b=2",
                                     "--hostname", "x", "--hostname", "y"])
    assert args.security_opt == ["a=1", "b=2"] and args.hostname == "y"


def test_defaults_match_the_docs():
    args = parse_run_cluster(BASE)
    assert (args.restart, args.network, args.shm_size) == ("unless-stopped", "host", "10.24g")


def test_flags_take_no_value():
    with pytest.raises(ConfigError, match="--privileged takes no value"):
        parse_run_cluster(BASE + ["--privileged=yes"])


def test_unknown_option_is_one_line_listing_the_supported():
    with pytest.raises(ConfigError) as err:
        parse_run_cluster(BASE + ["--oom-kill-disable"])
    msg = str(err.value)
    assert "\n" not in msg and "'--oom-kill-disable'" in msg
    for name in ("--ipc", "-p/--publish", "--ulimit", "--device", "--restart", "--dry-run"):
        assert name in msg


@pytest.mark.parametrize("flag", ["--serve", "--api-key-file"])
def test_serving_options_are_head_only(flag):
    with pytest.raises(ConfigError, match="--head"):
        parse_run_cluster(["img", "10.0.0.1", "--worker", "/hf", flag, "/x"])
    with pytest.raises(ConfigError, match="--head"):
        parse_run_cluster(["img", "10.0.0.1", "--worker", "/hf", "--allow-unauthenticated"])
