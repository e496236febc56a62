"""A bad setting stops every ``flask --app wsgi`` command with one line naming it (no
traceback) and a non-zero exit, wherever the setting came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import llm_tracker

ROOT = Path(__file__).resolve().parents[1]
GOOD_RULE = {"pattern": "alpha-.*", "input_per_mtok": "1", "output_per_mtok": "2"}
BAD_RULE = {"pattern": "beta-(", "input_per_mtok": "1", "output_per_mtok": "2"}
MESSAGE = (
    "Error: LLM_TRACKER_CUSTOM_PRICES[1] (pattern 'beta-('): pattern is not a valid "
    "regex: missing ), unterminated subpattern at position 5\n"
)
COMMANDS = [
    ["run", "--port", "0"],
    ["run", "--debug", "--port", "0"],
    ["db", "upgrade"],
    ["routes"],
    ["bootstrap"],
    ["reprice", "--since", "2026-01-01"],
]


def flask(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FLASK_") and key != "DATABASE_URL"
    }
    environ.update(LLM_TRACKER_INSTANCE_PATH=str(tmp_path / "instance"), **env)
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_bad_rule_from_the_environment_is_one_line(tmp_path, command):
    done = flask(
        tmp_path, *command, FLASK_LLM_TRACKER_CUSTOM_PRICES=json.dumps([GOOD_RULE, BAD_RULE])
    )
    assert (done.returncode, done.stdout, done.stderr) == (1, "", MESSAGE)


@pytest.mark.slow
def test_bad_rule_from_the_instance_config_is_one_line(tmp_path):
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "config.py").write_text(
        f"LLM_TRACKER_CUSTOM_PRICES = {[GOOD_RULE, BAD_RULE]!r}\n", encoding="utf-8"
    )
    done = flask(tmp_path, "run", "--port", "0")
    assert (done.returncode, done.stdout, done.stderr) == (1, "", MESSAGE)


@pytest.mark.slow
def test_bad_azure_map_is_one_line(tmp_path):
    done = flask(tmp_path, "routes", FLASK_LLM_TRACKER_AZURE_DEPLOYMENTS='["prod-4o"]')
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "Error: LLM_TRACKER_AZURE_DEPLOYMENTS must map deployment names to model names "
        "(strings), got ['prod-4o']\n",
    )


@pytest.mark.slow
def test_good_rules_start(tmp_path):
    done = flask(tmp_path, "routes", FLASK_LLM_TRACKER_CUSTOM_PRICES=json.dumps([GOOD_RULE]))
    assert done.returncode == 0, done.stderr
    assert "dashboard.index" in done.stdout


def test_the_library_raises_a_value_error(make_app):
    # Code that builds the app itself (tests, other factories) gets an exception to catch.
    with pytest.raises(llm_tracker.ConfigError) as info:
        make_app(LLM_TRACKER_CUSTOM_PRICES=[GOOD_RULE, BAD_RULE])
    assert isinstance(info.value, ValueError)
    assert f"Error: {info.value}\n" == MESSAGE
