"""staff: the audit trail, the daily digests, the bytes of quarantined mail

Staff act on registrations by command and by replying to a daily digest (issue 13): every
action is kept in ``audit`` (who, when, what, why), each day's digest in ``digests`` (its
id is signed into the digest's reply address), and a quarantined message's first bytes in
``quarantined_mail`` so staff can read it and hand it back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('via', sa.String(length=20), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('ref', sa.String(length=20), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_email'), ['email'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_id'), ['event_id'], unique=False)
    op.create_table('digests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('made_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent', sa.Boolean(), nullable=False),
    sa.Column('items', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('day')
    )
    op.create_table('quarantined_mail',
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('kept_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('quarantined_mail', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantined_mail_kept_at'), ['kept_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('quarantined_mail', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantined_mail_kept_at'))
    op.drop_table('quarantined_mail')
    op.drop_table('digests')
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_id'))
        batch_op.drop_index(batch_op.f('ix_audit_email'))
        batch_op.drop_index(batch_op.f('ix_audit_at'))
    op.drop_table('audit')
