"""The node container's supervisor, pure parts: backoff, the wait for the head, the serve config
round trip, and ServeKeeper restarting a server that exits (with a stand-in command)."""

import itertools

from cluster import supervisor
from cluster.supervisor import ServeKeeper, backoff_delays, wait_for


def test_backoff_doubles_and_is_bounded():
    assert list(itertools.islice(backoff_delays(1, 15), 7)) == [1, 2, 4, 8, 15, 15, 15]


def test_wait_for_logs_each_attempt_until_the_head_answers(capsys):
    answers = iter([False, False, True])
    slept = []
    assert wait_for("10.0.0.1", 6379, lambda: False, lambda h, p: next(answers), slept.append)
    lines = capsys.readouterr().out.splitlines()
    assert slept == [1, 2]
    assert ["attempt 1" in lines[0], "attempt 2" in lines[1], "answers" in lines[2]] == [True] * 3


def test_wait_for_gives_up_when_stopping():
    assert not wait_for("10.0.0.1", 6379, lambda: True, lambda h, p: False, lambda s: None)


def test_serve_config_round_trip_is_private(tmp_path):
    path = str(tmp_path / "serve.json")
    supervisor.write_serve_config({"args": ["m"], "env": {"ONENODE_API_KEY": "k"}}, path)
    assert supervisor.read_serve_config(path) == {"args": ["m"], "env": {"ONENODE_API_KEY": "k"}}
    assert (tmp_path / "serve.json").stat().st_mode & 0o777 == 0o600
    supervisor.clear_serve_config(path)
    assert supervisor.read_serve_config(path) is None


def test_keeper_restarts_an_exited_server_only_while_configured(tmp_path, monkeypatch):
    config, log = str(tmp_path / "serve.json"), str(tmp_path / "serve.log")
    started = []

    class FakePopen:
        def __init__(self, cmd, **kw):
            started.append(cmd)
            self.pid, self.code = 100 + len(started), None

        def poll(self):
            return self.code

    monkeypatch.setattr(supervisor.subprocess, "Popen", FakePopen)
    keeper = ServeKeeper(config, log)
    keeper.tick(0.0)
    assert started == []  # no config: nothing to serve
    supervisor.write_serve_config({"args": ["model", "--port", "8000"]}, config)
    keeper.tick(1.0)
    assert started == [["onenode", "serve", "model", "--port", "8000"]]
    keeper.proc.code = 3  # e.g. the engine's recovery timed out
    keeper.tick(2.0)
    assert keeper.proc is None and len(started) == 1  # waits its backoff first
    keeper.tick(10.0)
    assert len(started) == 2
    supervisor.clear_serve_config(config)  # `cluster serve-stop`
    keeper.proc.code = 0
    keeper.tick(100.0)
    assert len(started) == 2 and keeper.proc is None


def test_parse_needs_a_command_unless_managing_the_config():
    assert supervisor.parse(["--wait-for", "h:1", "--", "ray", "start"]).cmd == ["ray", "start"]
    assert supervisor.parse(["--clear-serve"]).clear_serve
