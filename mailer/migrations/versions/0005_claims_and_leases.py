"""claims and leases: several mailer processes over one store

Outbox rows are claimed before they are sent (``claimed_by``, ``lease_until``); one
instance at a time holds the leader's lease (``leases``, its row inserted here so taking it
is one UPDATE); ``send_slots`` holds the next free moment of the mail server's shared rate;
``instances`` says who is running, for ``mailer status``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def upgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('claimed_by', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'instances',
        sa.Column('id', sa.String(length=100), nullable=False),
        sa.Column('host', sa.String(length=100), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('command', sa.String(length=20), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'))
    leases = op.create_table(
        'leases',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('holder', sa.String(length=100), nullable=True),
        sa.Column('until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('since', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('name'))
    slots = op.create_table(
        'send_slots',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('next_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'))
    op.bulk_insert(leases, [{'name': 'leader', 'holder': None, 'until': None, 'since': None}])
    op.bulk_insert(slots, [{'name': 'smtp', 'next_at': EPOCH}])


def downgrade() -> None:
    op.drop_table('send_slots')
    op.drop_table('leases')
    op.drop_table('instances')
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('lease_until')
        batch.drop_column('claimed_by')
