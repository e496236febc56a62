"""cost columns: cost_usd, input/output parts, cache savings, price source

Rows written before this revision stay unpriced (NULL) until
`flask --app wsgi reprice --since DATE` prices them.

Revision ID: 434144cff75b
Revises: 9db6888236da
Create Date: 2026-11-28 15:54:56.235996

"""
from alembic import op
import sqlalchemy as sa
import llm_tracker.database

# revision identifiers, used by Alembic.
revision = '434144cff75b'
down_revision = '9db6888236da'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('llm_tracker_usage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cost_usd', llm_tracker.database.Money(), nullable=True))
        batch_op.add_column(sa.Column('input_cost_usd', llm_tracker.database.Money(), nullable=True))
        batch_op.add_column(sa.Column('output_cost_usd', llm_tracker.database.Money(), nullable=True))
        batch_op.add_column(sa.Column('cache_savings_usd', llm_tracker.database.Money(), nullable=True))
        batch_op.add_column(sa.Column('price_source', sa.String(length=200), nullable=True))
        # Partial: only unpriced rows, for `prices missing` and the list's priced=false.
        batch_op.create_index('ix_llm_tracker_usage_unpriced', ['created_at'], unique=False, sqlite_where=sa.text('cost_usd IS NULL'), postgresql_where=sa.text('cost_usd IS NULL'))


def downgrade():
    with op.batch_alter_table('llm_tracker_usage', schema=None) as batch_op:
        batch_op.drop_index('ix_llm_tracker_usage_unpriced', sqlite_where=sa.text('cost_usd IS NULL'), postgresql_where=sa.text('cost_usd IS NULL'))
        batch_op.drop_column('price_source')
        batch_op.drop_column('cache_savings_usd')
        batch_op.drop_column('output_cost_usd')
        batch_op.drop_column('input_cost_usd')
        batch_op.drop_column('cost_usd')

