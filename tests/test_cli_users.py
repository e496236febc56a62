"""flask create-admin / create-user / users ...: passwords given or prompted (hidden),
duplicates and unknown users refused, sessions ended by set-password and deactivate."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import ADMIN_PASSWORD, USER_PASSWORD, create_test_user
from sqlalchemy import select

from llm_tracker import User, db

USAGE = "/api/v1/admin/llm-usage/"


def login(client, username="admin", password=ADMIN_PASSWORD):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def get_user(app, username):
    with app.app_context():
        return db.session.execute(select(User).filter_by(username=username)).scalar_one_or_none()


def test_create_admin_with_password(app, runner, client):
    result = runner.invoke(args=["create-admin", "root", "--password", "s3cret-pw"])
    assert result.exit_code == 0, result.output
    assert result.output == "admin 'root' created (id 1)\n"
    user = get_user(app, "root")
    assert (user.is_staff, user.is_superuser, user.is_active, user.is_admin) == (
        True,
        True,
        True,
        True,
    )
    # Stored as a salted scrypt hash, never as the password.
    assert user.password_hash.startswith("scrypt:")
    assert "s3cret-pw" not in user.password_hash
    assert user.check_password("s3cret-pw") and not user.check_password("s3cret-PW")
    # The new admin can use the API.
    login = client.post("/api/v1/auth/login", json={"username": "root", "password": "s3cret-pw"})
    assert login.get_json() == {"id": 1, "username": "root", "is_admin": True}
    assert client.get("/api/v1/admin/token-stats/").status_code == 200


def test_create_admin_prompts_hidden_with_confirmation(app, runner):
    result = runner.invoke(args=["create-admin", "root"], input="typed-pw\ntyped-pw\n")
    assert result.exit_code == 0, result.output
    assert result.output == ("Password: \nRepeat for confirmation: \nadmin 'root' created (id 1)\n")
    assert "typed-pw" not in result.output
    assert get_user(app, "root").check_password("typed-pw")


def test_prompt_asks_again_when_the_two_differ(app, runner):
    result = runner.invoke(args=["create-user", "bob"], input="one\ntwo\nthree\nthree\n")
    assert result.exit_code == 0, result.output
    assert "Error: The two entered values do not match." in result.output
    assert get_user(app, "bob").check_password("three")


def test_create_user_is_not_admin(app, runner):
    result = runner.invoke(args=["create-user", "alice", "--password", "pw-alice"])
    assert result.exit_code == 0, result.output
    assert result.output == "user 'alice' created (id 1)\n"
    user = get_user(app, "alice")
    assert (user.is_staff, user.is_superuser, user.is_active, user.is_admin) == (
        False,
        False,
        True,
        False,
    )


def test_duplicate_username_is_an_error(app, runner):
    assert runner.invoke(args=["create-admin", "root", "--password", "a"]).exit_code == 0
    for command in ("create-admin", "create-user"):
        result = runner.invoke(args=[command, "root", "--password", "b"])
        assert result.exit_code == 1
        assert result.output == "Error: user 'root' already exists\n"
    assert get_user(app, "root").check_password("a")
    with app.app_context():
        assert len(db.session.execute(select(User)).all()) == 1


def test_empty_password_and_bad_usernames_are_refused(app, runner):
    result = runner.invoke(args=["create-admin", "root", "--password", ""])
    assert (result.exit_code, result.output) == (1, "Error: password must not be empty\n")
    message = "Error: username must be 1 to 150 characters without leading or trailing spaces\n"
    for name in ("", " root", "x" * 151):
        result = runner.invoke(args=["create-user", name, "--password", "pw"])
        assert (result.exit_code, result.output) == (1, message)
    with app.app_context():
        assert db.session.execute(select(User)).all() == []


def test_create_refuses_text_the_login_cannot_take(app, runner):
    for args, message in [
        (
            ["create-user", "bob", "--password", "x" * 1025],
            "Error: password must be at most 1024 characters\n",
        ),
        (
            ["create-user", "bob", "--password", "a\x00b"],
            "Error: password must not contain NUL characters or lone surrogates\n",
        ),
        (
            ["create-user", "b\x00b", "--password", "pw"],
            "Error: username must not contain NUL characters or lone surrogates\n",
        ),
    ]:
        result = runner.invoke(args=args)
        assert (result.exit_code, result.output) == (1, message)
    with app.app_context():
        assert db.session.execute(select(User)).all() == []


# --- flask users ... ---------------------------------------------------------------------


def joined(app, username, when):
    with app.app_context():
        db.session.execute(
            select(User).filter_by(username=username)
        ).scalar_one().date_joined = when
        db.session.commit()


def test_users_list(app, runner):
    assert runner.invoke(args=["users", "list"]).output == (
        "no users yet: flask --app wsgi create-admin NAME makes the first admin\n"
    )
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    create_test_user(app, "alice", USER_PASSWORD)
    create_test_user(app, "gone-for-good", "pw", active=False)
    joined(app, "admin", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    joined(app, "alice", datetime(2026, 7, 1, 23, 59, tzinfo=UTC))
    joined(app, "gone-for-good", datetime(2026, 12, 31, 0, 0, tzinfo=UTC))
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "id  username       admin  active  date joined\n"
        "1   admin          yes    yes     2026-01-02 03:04 UTC\n"
        "2   alice          no     yes     2026-07-01 23:59 UTC\n"
        "3   gone-for-good  no     no      2026-12-31 00:00 UTC\n"
    )


def test_set_password_with_option(app, runner, client):
    create_test_user(app, "alice", USER_PASSWORD)
    result = runner.invoke(args=["users", "set-password", "alice", "--password", "new-pw-1"])
    assert (result.exit_code, result.output) == (
        0,
        "password of 'alice' changed; its existing sessions ended\n",
    )
    user = get_user(app, "alice")
    assert user.password_hash.startswith("scrypt:")
    assert user.check_password("new-pw-1") and not user.check_password(USER_PASSWORD)


def test_set_password_prompts_hidden_with_confirmation(app, runner):
    create_test_user(app, "alice", USER_PASSWORD)
    result = runner.invoke(
        args=["users", "set-password", "alice"], input="one\ntwo\ntyped-pw\ntyped-pw\n"
    )
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Password: \nRepeat for confirmation: \nError: The two entered values do not match.\n"
        "Password: \nRepeat for confirmation: \n"
        "password of 'alice' changed; its existing sessions ended\n"
    )
    assert get_user(app, "alice").check_password("typed-pw")


def test_set_password_and_deactivate_end_existing_sessions(app, runner, client):
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    create_test_user(app, "root", "pw-root", admin=True)
    assert login(client).status_code == 200
    other = app.test_client()
    assert login(other, "root", "pw-root").status_code == 200
    assert client.get(USAGE).status_code == 200

    assert runner.invoke(args=["users", "set-password", "admin", "--password", "n"]).exit_code == 0
    response = client.get(USAGE)
    assert response.status_code == 401
    assert response.get_json() == {"error": "authentication required: log in first"}
    assert other.get(USAGE).status_code == 200  # root's session is not admin's

    assert runner.invoke(args=["users", "deactivate", "root"]).exit_code == 0
    assert other.get(USAGE).status_code == 401
    assert login(other, "root", "pw-root").status_code == 401
    assert login(client, "admin", "n").status_code == 200
    assert client.get(USAGE).status_code == 200


def test_grant_and_revoke_admin(app, runner, client):
    create_test_user(app, "alice", USER_PASSWORD)
    assert login(client, "alice", USER_PASSWORD).status_code == 200
    assert client.get(USAGE).status_code == 403

    result = runner.invoke(args=["users", "grant-admin", "alice"])
    assert (result.exit_code, result.output) == (0, "'alice' is now an admin\n")
    user = get_user(app, "alice")
    assert (user.is_staff, user.is_superuser, user.is_admin) == (True, True, True)
    # Rights are read on every request: the same session may read the API now.
    assert client.get(USAGE).status_code == 200
    result = runner.invoke(args=["users", "grant-admin", "alice"])
    assert (result.exit_code, result.output) == (0, "'alice' is already an admin\n")

    result = runner.invoke(args=["users", "revoke-admin", "alice"])
    assert (result.exit_code, result.output) == (
        0,
        (
            "'alice' is no longer an admin\n"
            "note: no active admin is left (flask --app wsgi users grant-admin NAME)\n"
        ),
    )
    user = get_user(app, "alice")
    assert (user.is_staff, user.is_superuser, user.is_admin, user.is_active) == (
        False,
        False,
        False,
        True,
    )
    assert client.get(USAGE).status_code == 403
    result = runner.invoke(args=["users", "revoke-admin", "alice"])
    assert (result.exit_code, result.output) == (0, "'alice' is not an admin\n")


def test_revoke_admin_is_quiet_while_another_admin_is_left(app, runner):
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    create_test_user(app, "root", "pw-root", admin=True)
    result = runner.invoke(args=["users", "revoke-admin", "root"])
    assert (result.exit_code, result.output) == (0, "'root' is no longer an admin\n")


def test_superuser_only_is_listed_as_admin_and_grant_completes_it(app, runner):
    create_test_user(app, "half", "pw")
    with app.app_context():
        db.session.execute(select(User)).scalar_one().is_superuser = True
        db.session.commit()
    joined(app, "half", datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    assert runner.invoke(args=["users", "list"]).output == (
        "id  username  admin  active  date joined\n"
        "1   half      yes    yes     2026-01-02 03:04 UTC\n"
    )
    result = runner.invoke(args=["users", "grant-admin", "half"])
    assert result.output == "'half' is now an admin\n"
    assert get_user(app, "half").is_staff


def test_deactivate_and_activate(app, runner, client):
    create_test_user(app, "alice", USER_PASSWORD)
    result = runner.invoke(args=["users", "deactivate", "alice"])
    assert (result.exit_code, result.output) == (
        0,
        "'alice' deactivated; its existing sessions ended\n",
    )
    assert get_user(app, "alice").is_active is False
    assert login(client, "alice", USER_PASSWORD).status_code == 401
    result = runner.invoke(args=["users", "deactivate", "alice"])
    assert (result.exit_code, result.output) == (
        0,
        "'alice' was already deactivated; its existing sessions ended\n",
    )
    result = runner.invoke(args=["users", "grant-admin", "alice"])
    assert result.output == (
        "'alice' is now an admin\n"
        "note: 'alice' is deactivated and cannot log in (flask --app wsgi users activate alice)\n"
    )

    result = runner.invoke(args=["users", "activate", "alice"])
    assert (result.exit_code, result.output) == (0, "'alice' activated\n")
    assert login(client, "alice", USER_PASSWORD).status_code == 200
    result = runner.invoke(args=["users", "activate", "alice"])
    assert (result.exit_code, result.output) == (0, "'alice' is already active\n")


@pytest.mark.parametrize(
    "command", ["set-password", "grant-admin", "revoke-admin", "deactivate", "activate"]
)
def test_unknown_user_is_a_one_line_error(app, runner, command):
    create_test_user(app, "alice", USER_PASSWORD)
    # No prompt for a password first: the name is checked before.
    result = runner.invoke(args=["users", command, "Alice"], input="pw\npw\n")
    assert (result.exit_code, result.output) == (1, "Error: no user 'Alice'\n")


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "Error: password must not be empty\n"),
        ("x" * 1025, "Error: password must be at most 1024 characters\n"),
        ("a\x00b", "Error: password must not contain NUL characters or lone surrogates\n"),
    ],
)
def test_set_password_refuses_bad_passwords(app, runner, password, message):
    create_test_user(app, "alice", USER_PASSWORD)
    with app.app_context():
        token = db.session.execute(select(User.session_token)).scalar_one()
    result = runner.invoke(args=["users", "set-password", "alice", "--password", password])
    assert (result.exit_code, result.output) == (1, message)
    user = get_user(app, "alice")
    assert user.check_password(USER_PASSWORD)
    assert user.session_token == token


def test_users_help_lists_the_commands(runner):
    result = runner.invoke(args=["users", "--help"])
    assert result.exit_code == 0
    for command in (
        "list",
        "set-password",
        "grant-admin",
        "revoke-admin",
        "deactivate",
        "activate",
    ):
        assert f"  {command} " in result.output


def test_the_403_page_names_the_command_an_admin_runs(client, app):
    create_test_user(app, "alice", USER_PASSWORD)
    assert login(client, "alice", USER_PASSWORD).status_code == 200
    page = client.get("/").get_data(as_text=True)
    assert "<code>flask --app wsgi users grant-admin alice</code>" in page
