"""flask create-admin / create-user: password given or prompted (hidden), duplicates refused."""

from __future__ import annotations

from sqlalchemy import select

from llm_tracker import User, db


def get_user(app, username):
    with app.app_context():
        return db.session.execute(select(User).filter_by(username=username)).scalar_one_or_none()


def test_create_admin_with_password(app, runner, client):
    result = runner.invoke(args=["create-admin", "root", "--password", "s3cret-pw"])
    assert result.exit_code == 0, result.output
    assert result.output == "admin 'root' created (id 1)\n"
    user = get_user(app, "root")
    assert (user.is_staff, user.is_superuser, user.is_active, user.is_admin) == (
        True, True, True, True)
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
    assert result.output == (
        "Password: \nRepeat for confirmation: \nadmin 'root' created (id 1)\n")
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
        False, False, True, False)


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
    message = ("Error: username must be 1 to 150 characters without leading or trailing "
               "spaces\n")
    for name in ("", " root", "x" * 151):
        result = runner.invoke(args=["create-user", name, "--password", "pw"])
        assert (result.exit_code, result.output) == (1, message)
    with app.app_context():
        assert db.session.execute(select(User)).all() == []
