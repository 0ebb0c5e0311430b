"""Generations: submit (gated), poll status and progress, download the released MP4."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from api import generation as pipeline
from api.deps import AccountDep, GeneratingAccountDep, HallmarkDep
from api.problems import ApiProblem
from api.schemas import GenerationCreate, GenerationView
from registry import Account, Generation, Generations, Role, Status

router = APIRouter(prefix="/v1/generations", tags=["generations"])
MAX_LIST = 500  # generations per listing


def _visible_to(account: Account, generation: Generation) -> bool:
    return account.id == generation.requester_id or account.role in (Role.admin, Role.auditor)


def _load_for(hm: HallmarkDep, account: Account, generation_id: str) -> Generation:
    with hm.db.session() as session:
        generation = Generations(session).find(generation_id)
    if generation is None or not _visible_to(account, generation):
        # One answer for a missing id and someone else's: other people's generations are not probed through this.
        raise ApiProblem(404, "not_found", f"No generation with id {generation_id!r}.",
                         hint="GET /v1/generations lists the generations your key can see.")
    return generation


@router.post("", status_code=202, response_model=GenerationView,
             responses={403: {"description": "Denied by the gate; the body lists every reason."}})
def create_generation(body: GenerationCreate, request: Request, hm: HallmarkDep, account: GeneratingAccountDep):
    """Gate the request; when allowed, queue it (202) and return its id. A denial is recorded and answered 403
    with every reason; nothing is generated."""
    generation = pipeline.submit(hm, account, body)
    view = GenerationView.of(generation)
    if generation.status == Status.denied:
        reasons = generation.decision.get("reasons", [])
        raise ApiProblem(403, "generation_denied",
                         "The request was denied: " + "; ".join(r["message"] for r in reasons),
                         hint="Each reason in `decision.reasons` says what stands in the way (a cameo's owner's "
                              "grant, a licence, the prompt itself); nothing was generated.",
                         generation_id=generation.id, decision=generation.decision)
    workers = getattr(request.app.state, "workers", None)
    if workers is not None:
        workers.notify()
    return JSONResponse(view.model_dump(mode="json"), status_code=202,
                        headers={"Location": f"/v1/generations/{generation.id}"})


@router.get("", response_model=list[GenerationView])
def list_generations(hm: HallmarkDep, account: AccountDep,
                     limit: Annotated[int, Query(ge=1, le=MAX_LIST, description="How many (newest first).")] = 50,
                     ) -> list[GenerationView]:
    """Your most recent generations, newest first."""
    with hm.db.session() as session:
        return [GenerationView.of(g) for g in Generations(session).for_requester(account.id, limit)]


@router.get("/{generation_id}", response_model=GenerationView)
def get_generation(generation_id: str, hm: HallmarkDep, account: AccountDep) -> GenerationView:
    """Status (queued, running, marking, completed, failed, denied, withheld, withdrawn), progress and decision."""
    return GenerationView.of(_load_for(hm, account, generation_id))


@router.get("/{generation_id}/video", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}}, 409: {"description": "Not released (yet)."}})
def get_video(generation_id: str, hm: HallmarkDep, account: AccountDep) -> FileResponse:
    """The released MP4: marked, signed, recorded."""
    generation = _load_for(hm, account, generation_id)
    if generation.status != Status.completed or not generation.output_path:
        raise ApiProblem(409, "not_released", f"Generation {generation_id} is {generation.status}; "
                         "only completed generations have a video.",
                         hint="Poll GET /v1/generations/{id} until status is completed.")
    path = Path(generation.output_path)
    if not path.is_file():
        raise ApiProblem(410, "gone", "The released file is no longer in the output store.")
    return FileResponse(path, media_type="video/mp4", filename=f"{generation_id}.mp4")
