"""The generation path uses the same gate at submit and at release: a licensee's clip is generated and released with
the stronger visible mark its licence obliges; a licence revoked while the job waits withholds the clip."""

from __future__ import annotations

from api import generation as pipeline
from api.context import Hallmark
from api.schemas import GenerationCreate
from api.works import WorkCreate, register_work, revoke_licence
from registry import Accounts, Role, Status


def test_licensed_generation_is_released_and_a_revoked_licence_withholds(sqlite_initialized) -> None:  # type: ignore[no-untyped-def]
    hm = Hallmark(sqlite_initialized.settings)
    try:
        with hm.db.session() as session:
            accounts = Accounts(session)
            studio = accounts.create("studio", Role.rights_holder)
            alice = accounts.create("alice", Role.creator)
        work = register_work(hm, studio, WorkCreate(name="Bluey", mode="licensed", licensees=["alice"]))
        request = GenerationCreate(prompt="Bluey playing in the yard", frames=12, fps=12, width=256, height=256,
                                   seed=3)

        released = pipeline.submit(hm, alice, request)
        assert released.status == Status.queued
        [obligation] = released.decision["obligations"]
        assert obligation["kind"] == "visible_mark" and obligation["min_opacity"] == 0.7
        released = pipeline.run(hm, released.id)
        assert released.status == Status.completed, released.error

        waiting = pipeline.submit(hm, alice, request)
        assert waiting.status == Status.queued
        revoke_licence(hm, studio, work.id, work.licences[0].id)
        withheld = pipeline.run(hm, waiting.id)
        assert withheld.status == Status.withheld
        assert [r["code"] for r in withheld.decision["release"]["reasons"]] == ["unlicensed_work"]
    finally:
        hm.close()
