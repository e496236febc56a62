"""64-bit counts and user ids, session tokens, shared login throttle

Token counts and user ids become 64-bit (BIGINT; SQLite's INTEGER already is). Every user
gets a random session token: sessions made before this revision end once, at upgrade.
Failed logins are counted in `login_failures`, shared by every worker process.

Revision ID: 3ee64f7c9fb4
Revises: f85728599569
Create Date: 2026-12-02 14:41:58.329175

"""
import secrets

from alembic import op
import sqlalchemy as sa
import llm_tracker.database


# revision identifiers, used by Alembic.
revision = '3ee64f7c9fb4'
down_revision = 'f85728599569'
branch_labels = None
depends_on = None

_COUNTS = ('user_id', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'cached_tokens',
           'cache_write_tokens', 'reasoning_tokens')


def upgrade():
    op.create_table('login_failures',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('window_start', llm_tracker.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_login_failures'))
    )
    with op.batch_alter_table('llm_tracker_usage', schema=None) as batch_op:
        for name in _COUNTS:
            batch_op.alter_column(name, existing_type=sa.INTEGER(), type_=sa.BigInteger(),
                                  existing_nullable=name == 'user_id')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_token', sa.String(length=64), nullable=True))
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('session_token', sa.String))
    conn = op.get_bind()
    for (user_id,) in conn.execute(sa.select(users.c.id)).all():
        conn.execute(users.update().where(users.c.id == user_id)
                     .values(session_token=secrets.token_hex(16)))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('session_token', existing_type=sa.String(length=64),
                              nullable=False)


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_token')

    with op.batch_alter_table('llm_tracker_usage', schema=None) as batch_op:
        for name in reversed(_COUNTS):
            batch_op.alter_column(name, existing_type=sa.BigInteger(), type_=sa.INTEGER(),
                                  existing_nullable=name == 'user_id')

    op.drop_table('login_failures')
