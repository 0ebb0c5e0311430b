"""cameos: verification, challenges, appearances, sealed face templates, protected persons

Revision ID: 0002_cameos
Revises: 0001
Create Date: 2026-11-21 12:48:09.246427
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0002_cameos'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    face_index_state = op.create_table('face_index_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.bulk_insert(face_index_state, [{"id": 1, "version": 0}])
    op.create_table('face_templates',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('subject_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('subject_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('face_templates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_face_templates_subject_id'), ['subject_id'], unique=False)

    op.create_table('protected_persons',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('protected_persons', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_protected_persons_name'), ['name'], unique=True)

    op.create_table('cameo_appearances',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('cameo_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('generation_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('requester_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('similarity', sa.Float(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cameo_id'], ['cameos.id'], ),
    sa.ForeignKeyConstraint(['generation_id'], ['generations.id'], ),
    sa.ForeignKeyConstraint(['requester_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('cameo_appearances', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cameo_appearances_cameo_id'), ['cameo_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cameo_appearances_generation_id'), ['generation_id'], unique=False)

    op.create_table('cameo_challenges',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('cameo_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('moves', sa.JSON(), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['cameo_id'], ['cameos.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('cameo_challenges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cameo_challenges_cameo_id'), ['cameo_id'], unique=False)

    with op.batch_alter_table('cameos', schema=None) as batch_op:
        # v0 cameos were handles without a verified face: they become pending (unusable until verified).
        batch_op.add_column(sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False,
                                      server_default='pending'))
        batch_op.add_column(sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False,
                                      server_default=sa.func.current_timestamp()))
        batch_op.add_column(sa.Column('content_restrictions', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('verification', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('protected_person_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_cameos_status'), ['status'], unique=False)
        batch_op.create_foreign_key('fk_cameos_protected_person_id', 'protected_persons', ['protected_person_id'],
                                    ['id'])



def downgrade() -> None:
    with op.batch_alter_table('cameos', schema=None) as batch_op:
        batch_op.drop_constraint('fk_cameos_protected_person_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_cameos_status'))
        batch_op.drop_column('protected_person_id')
        batch_op.drop_column('verification')
        batch_op.drop_column('content_restrictions')
        batch_op.drop_column('updated_at')
        batch_op.drop_column('deleted_at')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('verified_at')
        batch_op.drop_column('status')

    with op.batch_alter_table('cameo_challenges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cameo_challenges_cameo_id'))

    op.drop_table('cameo_challenges')
    with op.batch_alter_table('cameo_appearances', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cameo_appearances_generation_id'))
        batch_op.drop_index(batch_op.f('ix_cameo_appearances_cameo_id'))

    op.drop_table('cameo_appearances')
    with op.batch_alter_table('protected_persons', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_protected_persons_name'))

    op.drop_table('protected_persons')
    with op.batch_alter_table('face_templates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_face_templates_subject_id'))

    op.drop_table('face_templates')
    op.drop_table('face_index_state')
