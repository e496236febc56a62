"""What the README tells a new user holds: its flask commands run as written once it says
to activate the virtualenv, and a failed call's error reads as it documents."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from support.llm_settings import clear_llm_env, provider_config

from llm_tracker import LLMUsage, db, flush
from llm_tracker.llm_tracker import LLMTracker

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ACTIVATE = ". .venv/bin/activate"

pytestmark = pytest.mark.contract


def test_activating_the_venv_comes_before_the_first_flask_command():
    lines = README.splitlines()
    # The first command line (in a code block) that runs the project's flask.
    first_flask = next(
        i for i, line in enumerate(lines) if line.lstrip().startswith("flask --app wsgi")
    )
    assert ACTIVATE in lines[:first_flask], "the README must say to activate .venv first"
    assert README.count(ACTIVATE) == 1  # said once, where it is first needed


@pytest.mark.slow
@pytest.mark.skipif(
    not (ROOT / ".venv" / "bin" / "activate").exists(),
    reason="needs the .venv that make run / make test create",
)
def test_a_flask_example_runs_as_written_in_a_fresh_shell(tmp_path):
    # A shell whose PATH knows no project venv, as a new user's does.
    path = os.pathsep.join(
        p
        for p in os.environ["PATH"].split(os.pathsep)
        if not p.startswith(str(ROOT)) and "venv" not in p
    )
    env = {
        "PATH": path,
        "HOME": str(tmp_path),
        "LLM_TRACKER_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    done = subprocess.run(
        ["sh", "-c", f"{ACTIVATE}\nflask --app wsgi db upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "instance" / "llm_tracker.sqlite3").exists()


def _readme_text() -> str:
    return re.sub(r"\s+", " ", README)


@pytest.mark.parametrize(
    ("provider", "stored"),
    [
        ("openai", "OpenAIRateLimitError: Error code: 429 - quota says no"),
        ("azure_openai", "OpenAIRateLimitError: Error code: 429 - quota says no"),
        (
            "gemini",
            "GoogleRateLimitError: Error calling model 'gemini-2.5-flash' "
            "(RESOURCE_EXHAUSTED): 429 RESOURCE_EXHAUSTED. {'error': {'code': 429, "
            "'message': 'quota says no', 'status': 'RESOURCE_EXHAUSTED'}}",
        ),
    ],
)
def test_a_rate_limited_call_stores_the_error_the_readme_shows(
    make_app, fake_provider, monkeypatch, provider, stored
):
    clear_llm_env(monkeypatch)
    app = make_app(**provider_config(provider, fake_provider.base_url))
    fake_provider.enqueue_error(429, "quota says no")
    with app.app_context():
        with pytest.raises(Exception, match="quota says no"):
            LLMTracker.call_and_track([{"role": "user", "content": "hi"}])
        flush()
        [row] = db.session.scalars(db.select(LLMUsage)).all()
    assert (row.success, row.error) == (False, stored)
    # The README's example is this text up to its "...".
    shown = re.findall(r"`\"?((?:OpenAI|Google)RateLimitError: [^`]*?) \.\.\.\"?`", _readme_text())
    assert any(stored.startswith(example) for example in shown), shown
    assert '`"RateLimitError: ..."`' not in README
