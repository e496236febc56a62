"""Models and migrations cannot drift: upgrade, then ``flask db check``."""

from llm_tracker import db


def test_upgrade_then_check(make_app):
    app = make_app(create_tables=False)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["db", "check"])  # exits non-zero on any drift
    assert result.exit_code == 0, result.output
    with app.app_context():
        tables = set(db.inspect(db.engine).get_table_names())
    assert {"llm_tracker_usage", "users", "alembic_version"} <= tables
