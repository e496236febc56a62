"""``flask chat "prompt"``: one tracked call, to see a row appear."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .llm_tracker import LLMTracker


@click.command("chat")
@click.argument("prompt")
@click.option("--json", "json_mode", is_flag=True, help="Ask the model for a JSON object.")
@click.option("--user-id", type=int, default=None, help="User id stored on the row.")
@click.option("--node", "node_name", default="unknown", show_default=True,
              help="Node name stored on the row.")
@with_appcontext
def chat_command(prompt: str, json_mode: bool, user_id: int | None, node_name: str) -> None:
    """Send PROMPT to the configured provider, record the call, print reply and usage."""
    state = {"user_id": user_id, "source_type": "cli"}
    try:
        content, usage = LLMTracker.call_and_track(
            [{"role": "user", "content": prompt}],
            json_mode=json_mode, node_name=node_name, state=state)
    except ValueError as exc:
        # Configuration errors and the empty reply: the message says it all.
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # the provider's error: its row is recorded with success=False
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    click.echo(content)
    click.echo("--- usage ---")
    for key, value in usage.items():
        click.echo(f"{key}: {value}")
