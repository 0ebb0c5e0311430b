"""index generations by manifest label (the C2PA Soft Binding Resolution API looks manifests up by id)

Revision ID: 0003_manifest_label_index
Revises: 0002_cameos
Create Date: 2026-11-21 12:40:43.592177
"""

from __future__ import annotations

from alembic import op


revision = '0003_manifest_label_index'
down_revision = '0002_cameos'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('generations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_generations_manifest_label'), ['manifest_label'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('generations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_generations_manifest_label'))

