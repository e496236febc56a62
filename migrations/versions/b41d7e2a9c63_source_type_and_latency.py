"""source_type and ttft_ms columns; rollups keyed on source_type; latency histograms; slices

`llm_tracker_usage.source_type` is backfilled from the rows' metadata (where the first
release kept it). The rollup tables gain source_type in their key, so they are recreated
and filled again from the raw rows, and the new tables are filled the same way: the
latency histograms (one row per rollup key and log-spaced latency bin) and the daily
one-dimension slices (model, user, node, source type, provider) with theirs. The SQL and the bin edges are
written out here rather than taken from llm_tracker, so this revision keeps doing what it
did when that code changes. On a very large table `flask --app wsgi rollup rebuild`
recomputes the rollups in batches.

Revision ID: b41d7e2a9c63
Revises: 3ee64f7c9fb4
Create Date: 2026-12-03 14:05:00.000000

"""
from alembic import op
import sqlalchemy as sa
import llm_tracker.database


# revision identifiers, used by Alembic.
revision = 'b41d7e2a9c63'
down_revision = '3ee64f7c9fb4'
branch_labels = None
depends_on = None

_ROLLUPS = ('llm_tracker_usage_rollup', 'llm_tracker_usage_rollup_day')
_LATENCY = ('llm_tracker_latency_rollup', 'llm_tracker_latency_rollup_day')
_SLICES = ('llm_tracker_usage_slice_day', 'llm_tracker_latency_slice_day')
_DIMENSIONS = {'model': 'model', 'user': 'user_id', 'node': 'node_name',
               'source_type': 'source_type', 'provider': 'provider'}
_SUMS = ('calls', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'cached_tokens',
         'cache_write_tokens', 'reasoning_tokens', 'unpriced_calls')
_MONEY = ('cost_usd', 'input_cost_usd', 'output_cost_usd', 'cache_savings_usd')


def _key_columns(with_source):
    columns = [
        sa.Column('bucket', llm_tracker.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('provider', sa.String(length=50), nullable=False),
        sa.Column('user_id', sa.BigInteger(), nullable=False),
        sa.Column('node_name', sa.String(length=200), nullable=False),
    ]
    if with_source:
        columns.append(sa.Column('source_type', sa.String(length=200), nullable=False))
    columns.append(sa.Column('success', sa.Boolean(), nullable=False))
    return columns


def _create_rollup(table, with_source):
    keys = _key_columns(with_source)
    op.create_table(
        table,
        *keys,
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _SUMS),
        *(sa.Column(name, llm_tracker.database.Money(precision=20, scale=12), nullable=False)
          for name in _MONEY),
        sa.PrimaryKeyConstraint(*(c.name for c in keys), name=op.f(f'pk_{table}')),
    )
    op.create_index(f'ix_{table}_user_id_bucket', table, ['user_id', 'bucket'], unique=False)


def _create_latency(table):
    keys = _key_columns(True)
    op.create_table(
        table,
        *keys,
        sa.Column('bin', sa.SmallInteger(), nullable=False),
        sa.Column('calls', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*(c.name for c in keys), 'bin', name=op.f(f'pk_{table}')),
    )
    op.create_index(f'ix_{table}_user_id_bucket', table, ['user_id', 'bucket'], unique=False)


def _slice_key():
    return [
        sa.Column('dimension', sa.String(length=20), nullable=False),
        sa.Column('bucket', llm_tracker.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column('value', sa.String(length=200), nullable=False),
    ]


def _create_slices():
    op.create_table(
        _SLICES[0],
        *_slice_key(),
        sa.Column('successful_calls', sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _SUMS),
        *(sa.Column(name, llm_tracker.database.Money(precision=20, scale=12), nullable=False)
          for name in _MONEY),
        sa.PrimaryKeyConstraint('dimension', 'bucket', 'value', name=op.f(f'pk_{_SLICES[0]}')),
    )
    op.create_table(
        _SLICES[1],
        *_slice_key(),
        sa.Column('bin', sa.SmallInteger(), nullable=False),
        sa.Column('calls', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('dimension', 'bucket', 'value', 'bin',
                                name=op.f(f'pk_{_SLICES[1]}')),
    )


def _fill_slices():
    day = _buckets(op.get_bind().dialect.name)[1]
    sums = ', '.join(
        ['sum(CASE WHEN success THEN 1 ELSE 0 END)', 'count(*)',
         *(f'sum({name})' for name in _SUMS[1:-1]),
         'sum(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)',
         *(f'coalesce(sum({name}), 0)' for name in _MONEY)])
    columns = ', '.join(('successful_calls', *_SUMS, *_MONEY))
    bin_sql = _bin_sql(_edges())
    for dimension, column in _DIMENSIONS.items():
        # A user id as its decimal digits; '' stands for none.
        value = f"coalesce(CAST({column} AS VARCHAR(200)), '')"
        op.get_bind().exec_driver_sql(
            f"INSERT INTO {_SLICES[0]} (dimension, bucket, value, {columns}) "
            f"SELECT '{dimension}', {day}, {value}, {sums} FROM llm_tracker_usage "
            f"GROUP BY 2, 3")
        op.get_bind().exec_driver_sql(
            f"INSERT INTO {_SLICES[1]} (dimension, bucket, value, bin, calls) "
            f"SELECT '{dimension}', {day}, {value}, {bin_sql}, count(*) FROM llm_tracker_usage "
            f"WHERE latency_ms IS NOT NULL GROUP BY 2, 3, 4")


def _buckets(dialect):
    if dialect == 'postgresql':
        return ('to_timestamp(floor(extract(epoch FROM created_at) / 900) * 900)',
                'to_timestamp(floor(extract(epoch FROM created_at) / 86400) * 86400)')
    # UTCDateTime stores naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return ("substr(created_at, 1, 14) || printf('%02d', "
            "CAST(substr(created_at, 15, 2) AS INTEGER) / 15 * 15) || ':00.000000'",
            "substr(created_at, 1, 10) || ' 00:00:00.000000'")


# llm_tracker.latency's edges as of this revision: bin k is [EDGES[k], EDGES[k + 1]).
def _edges():
    edges = [0, 1]
    while edges[-1] < 2**31:
        last = edges[-1]
        edges.append(max(last + 1, last * 118 // 100))
    return edges


def _bin_sql(edges):
    def node(lo, hi):
        if hi - lo == 1:
            return str(lo)
        mid = (lo + hi) // 2
        return (f'CASE WHEN latency_ms < {edges[mid]} THEN {node(lo, mid)} '
                f'ELSE {node(mid, hi)} END')
    return node(0, len(edges) - 1)


def _fill(with_source):
    dialect = op.get_bind().dialect.name
    source = ", coalesce(source_type, '')" if with_source else ''
    source_column = ', source_type' if with_source else ''
    # NULL provider / user_id (/ source_type) become the rollups' sentinels ('' and
    # -2**63): their key columns are NOT NULL so that ON CONFLICT matches them.
    key = (f"model, coalesce(provider, ''), coalesce(user_id, -9223372036854775808), "
           f"node_name{source}, success")
    columns = f'bucket, model, provider, user_id, node_name{source_column}, success'
    sums = ', '.join(
        ['count(*)', *(f'sum({name})' for name in _SUMS[1:-1]),
         'sum(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)',
         *(f'coalesce(sum({name}), 0)' for name in _MONEY)])
    groups = ', '.join(str(n) for n in range(1, 7 + bool(with_source)))
    for table, bucket in zip(_ROLLUPS, _buckets(dialect)):
        # Driver SQL: text() would read ':00' as a bind parameter.
        op.get_bind().exec_driver_sql(
            f"INSERT INTO {table} ({columns}, {', '.join((*_SUMS, *_MONEY))}) "
            f"SELECT {bucket}, {key}, {sums} FROM llm_tracker_usage GROUP BY {groups}")
    if with_source:
        bin_sql = _bin_sql(_edges())
        for table, bucket in zip(_LATENCY, _buckets(dialect)):
            op.get_bind().exec_driver_sql(
                f"INSERT INTO {table} ({columns}, bin, calls) "
                f"SELECT {bucket}, {key}, {bin_sql}, count(*) FROM llm_tracker_usage "
                f"WHERE latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7, 8")


def upgrade():
    with op.batch_alter_table('llm_tracker_usage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_type', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('ttft_ms', sa.Integer(), nullable=True))
    # The first release kept source_type in the metadata only (a string or a number).
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            "UPDATE llm_tracker_usage SET source_type = left(metadata->>'source_type', 200) "
            "WHERE jsonb_typeof(metadata->'source_type') IN ('string', 'number') "
            "AND btrim(metadata->>'source_type') <> ''")
    else:
        op.execute(
            "UPDATE llm_tracker_usage "
            "SET source_type = substr(CAST(json_extract(metadata, '$.source_type') AS TEXT), 1, 200) "
            "WHERE json_type(metadata, '$.source_type') IN ('text', 'integer', 'real') "
            "AND trim(CAST(json_extract(metadata, '$.source_type') AS TEXT)) <> ''")
    for table in _ROLLUPS:
        op.drop_table(table)
        _create_rollup(table, with_source=True)
    for table in _LATENCY:
        _create_latency(table)
    _fill(with_source=True)
    _create_slices()
    _fill_slices()


def downgrade():
    for table in (*_SLICES, *_LATENCY):
        op.drop_table(table)
    for table in _ROLLUPS:
        op.drop_table(table)
        _create_rollup(table, with_source=False)
    _fill(with_source=False)
    with op.batch_alter_table('llm_tracker_usage', schema=None) as batch_op:
        batch_op.drop_column('ttft_ms')
        batch_op.drop_column('source_type')
