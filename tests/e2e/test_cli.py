"""The command line itself: help, version, exit statuses."""
import re

import pytest

COMMANDS = ["validate", "explain", "assess", "netpol", "render", "eject", "doctor", "run", "gc",
            "create", "exec", "logs", "stop", "start", "rm", "ls", "get", "pool", "verify",
            "audit", "serve", "reference", "completion", "version", "help"]


def test_version(stockade):
    r = stockade("--version")
    assert r.returncode == 0
    assert re.fullmatch(r"stockade \d+\.\d+\.\d+\n", r.stdout)


def test_no_arguments_is_usage_error(stockade):
    r = stockade()
    assert r.returncode == 125
    assert "see 'stockade --help'" in r.stderr and "Usage" not in r.stderr


def test_unknown_command(stockade):
    r = stockade("frobnicate")
    assert r.returncode == 125
    assert "unknown command 'frobnicate'" in r.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(stockade, command):
    r = stockade(command, "--help")
    assert r.returncode == 0
    assert r.stdout.startswith(f"Usage: stockade {command}")


def test_main_help_lists_every_command(stockade):
    r = stockade("--help")
    assert r.returncode == 0
    for command in COMMANDS:
        assert re.search(rf"^  {command}\s", r.stdout, re.M), command
