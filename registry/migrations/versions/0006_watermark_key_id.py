"""record which watermark key marked each generation (a mark read with another key is forged)

Revision ID: 0006_watermark_key_id
Revises: 0005_audit_log
Create Date: 2026-12-05 17:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006_watermark_key_id'
down_revision = '0005_audit_log'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('generations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('watermark_key_id', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('generations', schema=None) as batch_op:
        batch_op.drop_column('watermark_key_id')
