"""The C2PA Soft Binding Resolution API (C2PA specification, "Soft Binding Resolution API"), so that any C2PA
tool that reads our soft-binding assertion can recover the manifest of a clip whose metadata was stripped:

    GET  /matches/byBinding?alg=&value=&maxResults=      soft binding -> manifest ids
    POST /matches/byBinding  {"alg", "value"}             the same, for values too long for a URL
    POST /matches/byContent?alg=&maxResults=&hintAlg=&hintValue=   the asset itself -> manifest ids
    GET  /manifests/{manifestId}?returnActiveManifest=    the manifest store (application/c2pa)
    GET  /services/supportedAlgorithms                    {"watermarks": [{"alg"}], "fingerprints": []}

Values are base64, as the specification says; our soft-binding value is the 64-bit watermark payload. Like
verification, resolution is public: the manifests it returns are the ones embedded in released clips."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from api.context import Hallmark
from api.deps import PUBLIC_RATE_LIMIT, HallmarkDep
from api.problems import ApiProblem
from api.request_body import RequestBody
from api.uploads import receive_upload, temp_upload_path
from api.verification import label_resolver
from api.verify_slots import verify_slots
from guard.errors import InvalidInput
from guard.marks import METHODS, WatermarkMethod, watermark_method
from guard.marks.invisible import PAYLOAD_BYTES
from guard.media import probe
from guard.provenance import c2pa_mime_for_container, payload_from_soft_binding_value, read_c2pa
from guard.verify import detect_watermark, made_with_another_key, stored_generation
from registry import Generation, Generations, Status

router = APIRouter(tags=["C2PA soft binding resolution"], dependencies=[PUBLIC_RATE_LIMIT])

C2PA_MANIFEST = "application/c2pa"
RESOLVABLE = (Status.completed, Status.withdrawn)  # released clips; a withdrawn clip's provenance is still a fact
MaxResults = Annotated[int, Query(alias="maxResults", ge=1, le=100, description="Most manifest ids to return.")]
# A soft-binding value of ours is 12 base64 characters; these bounds are generous and keep a query (and the error
# that quotes it) small. Before, a 100 MB value was parsed whole and echoed back in the 400.
MAX_ALG_LENGTH = 256
MAX_VALUE_LENGTH = 1024
MAX_QUERY_BODY = 8 * 1024  # a JSON query larger than this is refused before it is parsed

RETIRED_KEY_SCORE = 50  # the highest similarityScore of a match read with a retired watermark key


class SoftBindingQuery(RequestBody):
    alg: str = Field(..., max_length=MAX_ALG_LENGTH,
                     description="Soft binding algorithm, e.g. the `alg` of the manifest's soft binding.")
    value: str = Field(..., max_length=MAX_VALUE_LENGTH, description="Base64 soft binding value.")


class Match(BaseModel):
    manifestId: str
    similarityScore: int | None = Field(None, ge=0, le=100)
    endpoint: str | None = None


class QueryResult(BaseModel):
    matches: list[Match]


def _methods(hm: Hallmark) -> dict[str, WatermarkMethod]:
    """Soft-binding alg -> the keyed watermark method that writes it (the current one and every other known)."""
    methods = {hm.watermark.soft_binding_alg: hm.watermark}
    for name in METHODS:
        if name != hm.watermark.name:
            method = watermark_method(name, hm.watermark_key, hm.watermark_retired_keys)
            methods.setdefault(method.soft_binding_alg, method)
    return methods


def _require_alg(hm: Hallmark, alg: str) -> WatermarkMethod:
    methods = _methods(hm)
    if alg not in methods:
        raise ApiProblem(400, "unsupported_algorithm", f"This service does not resolve soft bindings of alg {alg!r}.",
                         hint="GET /services/supportedAlgorithms lists the ones it does.",
                         supported=sorted(methods))
    return methods[alg]


def _payload(value: str) -> bytes:
    try:
        payload = payload_from_soft_binding_value(value)
    except InvalidInput as exc:
        raise ApiProblem(400, "invalid_query", exc.message, hint=exc.hint) from exc
    if len(payload) != PAYLOAD_BYTES:
        raise ApiProblem(400, "invalid_query", f"A soft-binding value of this service is {PAYLOAD_BYTES} bytes "
                         f"(base64); got {len(payload)} bytes.", hint="Give the value exactly as the manifest has it.")
    return payload


def _released(generation: Generation | None) -> bool:
    return generation is not None and generation.status in RESOLVABLE and bool(generation.manifest)


def _match_payload(hm: Hallmark, method: WatermarkMethod, payload: bytes, key_id: str | None = None) -> list[Match]:
    """The released generation with this payload. `key_id`: the key a mark read from content was read with; a mark
    made with another key than the generation's own is forged (verify.py), and leads nowhere."""
    with hm.db.session() as session:
        generation = Generations(session).by_payload(payload.hex())
        if not _released(generation) or generation.manifest_label is None:
            return []
        if generation.watermark_method and generation.watermark_method != method.name:
            return []  # the payload exists, but under another algorithm
        if made_with_another_key(key_id, generation.watermark_key_id):
            return []
        return [Match(manifestId=generation.manifest_label, similarityScore=100)]


@router.get("/matches/byBinding", response_model=QueryResult, response_model_exclude_none=True)
def matches_by_binding(hm: HallmarkDep, alg: Annotated[str, Query(max_length=MAX_ALG_LENGTH)],
                       value: Annotated[str, Query(max_length=MAX_VALUE_LENGTH)],
                       max_results: MaxResults = 10) -> QueryResult:
    """Manifest ids whose soft binding is (`alg`, `value`)."""
    method = _require_alg(hm, alg)
    return QueryResult(matches=_match_payload(hm, method, _payload(value))[:max_results])


@router.post("/matches/byBinding", response_model=QueryResult, response_model_exclude_none=True,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": SoftBindingQuery.model_json_schema()}}}},
             responses={413: {"description": f"A body over {MAX_QUERY_BODY} bytes."}})
async def matches_by_large_binding(request: Request, hm: HallmarkDep,
                                   max_results: MaxResults = 10) -> QueryResult:
    """The same as GET, with the query in a JSON body."""
    query = await _read_query(request)
    method = _require_alg(hm, query.alg)
    payload = _payload(query.value)
    matches = await run_in_threadpool(_match_payload, hm, method, payload)
    return QueryResult(matches=matches[:max_results])


async def _read_query(request: Request) -> SoftBindingQuery:
    """The JSON body as a query. The body is at most MAX_QUERY_BODY bytes (app.py gives this endpoint that limit):
    FastAPI would read and parse a body of any size before a field's max_length is checked. An invalid body is a
    422 like any other request validation error."""
    body = await request.body()
    try:
        return SoftBindingQuery.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_input=False)]
        raise RequestValidationError(errors) from exc


@router.post("/matches/byContent", response_model=QueryResult, response_model_exclude_none=True,
             openapi_extra={"requestBody": {"content": {"video/*": {"schema": {"type": "string",
                                                                              "format": "binary"}}}}},
             responses={415: {"description": "Not a video."}, 413: {"description": "Too large."}})
async def matches_by_content(
    request: Request, hm: HallmarkDep, alg: str | None = None, max_results: MaxResults = 10,
    hint_alg: Annotated[str | None, Query(alias="hintAlg")] = None,
    hint_value: Annotated[str | None, Query(alias="hintValue")] = None,
) -> QueryResult:
    """Upload the asset (a video, as the raw body): its watermark is read (and its embedded manifest, if any) and
    the manifests they lead to are returned. A hint (`hintAlg`, `hintValue`: a soft binding the client read itself)
    only chooses the algorithm read first: a match is what the content shows, never the client's word (a hinted
    value was returned at score 100, so any clip could be made to resolve to any manifest)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and not content_type.startswith(("video/", "application/octet-stream", "multipart/form-data")):
        raise ApiProblem(415, "unsupported_media", f"This service resolves video only; got {content_type}.",
                         hint="Send the video file as the body with its video/* Content-Type.")
    methods = [_require_alg(hm, alg)] if alg else list(_methods(hm).values())[:1]
    if hint_alg and hint_value:
        _payload(hint_value)  # a malformed hint is still refused, as any malformed value is
        hinted = _require_alg(hm, hint_alg)
        methods = [hinted, *(method for method in methods if method is not hinted)]
    with temp_upload_path(hm.paths.tmp) as target:
        upload = await receive_upload(request, target, hm.settings.max_upload_bytes)
        async with verify_slots(request.app).hold():  # the same work as a verification, under the same cap
            matches = await run_in_threadpool(_match_content, hm, upload.path, methods)
    return QueryResult(matches=matches[:max_results])


def _match_content(hm: Hallmark, path: Any, methods: list[WatermarkMethod]) -> list[Match]:
    media = probe(path)  # MediaError (422) for what is not a readable video
    found: dict[str, Match] = {}
    mime = c2pa_mime_for_container(media.container)
    if mime is not None:
        # The embedded manifest counts when it is the very one stored for a released generation (Trusted, same
        # signer and assertions: verify.stored_generation), not when its label merely names one: anyone can copy a
        # label into a manifest of their own.
        embedded = read_c2pa(path, hm.trust, mime)
        if stored_generation(embedded, label_resolver(hm, None), hm.trust) is not None and embedded.manifest_label:
            with hm.db.session() as session:
                if _released(Generations(session).by_manifest_label(embedded.manifest_label)):
                    found[embedded.manifest_label] = Match(manifestId=embedded.manifest_label, similarityScore=100)
    for method in methods:
        detection = detect_watermark(path, media, method, hm.settings.verify_max_seconds or None)
        if detection.detected and detection.payload is not None:
            for match in _match_payload(hm, method, detection.payload, detection.key_id):
                score = 100 if detection.p_value is None else max(0, min(100, round(100 * (1 - detection.p_value))))
                if detection.retired_key is not None:
                    # Read with a retired watermark key: genuine unless that key leaked (why keys are retired), so
                    # ranked below a read with the current key or the file's own manifest.
                    score = min(score, RETIRED_KEY_SCORE)
                found.setdefault(match.manifestId, match.model_copy(update={"similarityScore": score}))
    return list(found.values())


@router.get("/manifests/{manifest_id}", response_class=Response,
            responses={200: {"content": {C2PA_MANIFEST: {}}}, 400: {"description": "Not a C2PA manifest id."},
                       404: {"description": "Unknown manifest id."}})
def get_manifest(manifest_id: str, hm: HallmarkDep,
                 return_active_manifest: Annotated[bool, Query(alias="returnActiveManifest")] = False) -> Response:
    """The C2PA manifest store with this manifest id (urn:c2pa:...). Our stores hold only the active manifest
    (a reference-image ingredient carries no manifest of its own), so `returnActiveManifest` returns the same."""
    if not manifest_id.startswith(("urn:c2pa:", "urn:uuid:")) or len(manifest_id) > 200:
        raise ApiProblem(400, "invalid_manifest_id", f"{manifest_id!r} is not a C2PA manifest id.",
                         hint="Manifest ids look like urn:c2pa:3fa2...; /matches/byBinding returns them.")
    with hm.db.session() as session:
        generation = Generations(session).by_manifest_label(manifest_id)
        if not _released(generation):
            raise ApiProblem(404, "not_found", f"No manifest with id {manifest_id!r}.")
        data = bytes(generation.manifest or b"")
    return Response(content=data, media_type=C2PA_MANIFEST,
                    headers={"Content-Disposition": f'attachment; filename="{manifest_id.replace(":", "_")}.c2pa"'})


@router.get("/services/supportedAlgorithms")
def supported_algorithms(hm: HallmarkDep) -> dict[str, list[dict[str, str]]]:
    """The soft-binding algorithms this service resolves: our invisible watermarks; no fingerprints."""
    return {"watermarks": [{"alg": alg} for alg in sorted(_methods(hm))], "fingerprints": []}
