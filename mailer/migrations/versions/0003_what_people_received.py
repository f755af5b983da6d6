"""what people received: per-person SEQUENCE, the reply's UTC offset, shown values, pack versions

- ``registrations.sequence_offset``: how far a person's own withdrawals and re-registrations
  raised the SEQUENCE of their calendar entry above the event's (RFC 5546 2.1.4: a CANCEL,
  and a REQUEST after it, must carry a higher SEQUENCE than the last one they got).
- ``registrations.utc_offset``: the UTC offset (minutes) of the Date header of the reply
  that registered them, which picks their zone in a country with several.
- ``event_versions.shown``: what participants saw of each version of the event (start, end,
  link, title), so an update says what changed.
- ``event_versions.packs``: per language, the digest of the pack's files and its version;
  the pack is keyed by that version, no longer by the event's start (moving an event
  re-sent the pack to everyone). Existing pack rows are renamed to the new key of version
  0, so nobody gets a pack again because of this upgrade.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('registrations') as batch:
        batch.add_column(sa.Column('sequence_offset', sa.Integer(), nullable=False,
                                   server_default='0'))
        batch.add_column(sa.Column('utc_offset', sa.Integer(), nullable=True))
    with op.batch_alter_table('event_versions') as batch:
        batch.add_column(sa.Column('shown', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('packs', sa.JSON(), nullable=True))
    _rename_pack_keys()


def _rename_pack_keys() -> None:
    """``pack|event|0|email|<start>`` -> ``pack|event|0|email``: the newest row per person."""
    bind = op.get_bind()
    outbox = sa.table('outbox', sa.column('id', sa.Integer), sa.column('key', sa.String))
    rows = bind.execute(sa.select(outbox.c.id, outbox.c.key)
                        .where(outbox.c.key.like('pack|%')).order_by(outbox.c.id.desc()))
    taken = {key for (key,) in bind.execute(sa.select(outbox.c.key)
                                            .where(outbox.c.key.like('pack|%')))}
    for row_id, key in rows.all():
        parts = key.split('|')
        if len(parts) != 5:
            continue
        new = '|'.join(parts[:4])
        if new in taken:
            continue            # a newer row of this person already took it
        bind.execute(sa.update(outbox).where(outbox.c.id == row_id).values(key=new))
        taken.add(new)


def downgrade() -> None:
    with op.batch_alter_table('event_versions') as batch:
        batch.drop_column('packs')
        batch.drop_column('shown')
    with op.batch_alter_table('registrations') as batch:
        batch.drop_column('utc_offset')
        batch.drop_column('sequence_offset')
