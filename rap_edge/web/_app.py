"""The FastAPI application: REST API under ``/api/`` and the server-rendered pages.

FastAPI, Starlette and Jinja2 are imported inside :func:`create_app` (the ``web`` extra is
optional). The routes only translate HTTP into :class:`~rap_edge.web.WebState` calls: no
recognition logic lives here. Annotations are evaluated at definition time (no ``from
__future__ import annotations``) because FastAPI reads them to parse requests.
"""

# ruff: noqa: B008, FAST002, ANN401, D205, PLR0913, PLR0917

import hashlib
import hmac
import ipaddress
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rap_edge.errors import (
    ConceptNotFoundError,
    ConflictError,
    InvalidInputError,
    MemoryLockedError,
    RapEdgeError,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from rap_edge.interfaces import Concept
    from rap_edge.web._state import WebState

__all__ = ["WebConfig", "create_app", "error_status", "is_loopback"]

SESSION_COOKIE = "rap_edge_session"
MAX_PHOTOS = 8  # photos per upload request
MAX_BODY_BYTES = 130 * 1024 * 1024  # MAX_PHOTOS full-size photos and the form around them
_HERE = Path(__file__).parent


def is_loopback(host: str) -> bool:
    """Whether a bind address is this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error_status(err: RapEdgeError) -> int:
    """The HTTP status of an error: input mistakes 4xx, the environment 5xx (CLI's 1 vs 2)."""
    if isinstance(err, ConceptNotFoundError):
        return 404
    if isinstance(err, ConflictError):
        return 409
    if err.exit_code == 1:
        return 400
    if isinstance(err, MemoryLockedError):
        return 503
    return 500


def error_json(err: RapEdgeError) -> dict[str, Any]:
    """The JSON body of an error: the CLI's message and exit code."""
    return {"error": str(err), "type": type(err).__name__, "exit_code": err.exit_code}


class WebConfig:
    """How the app guards itself: whether a login is needed, where the password lives."""

    def __init__(
        self,
        *,
        memory: Path,
        auth: bool,
        allowed_hosts: tuple[str, ...] = (),
        max_upload_bytes: int | None = None,
        max_upload_pixels: int | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        """See the attributes."""
        from rap_edge.web._auth import LoginLimiter, Sessions
        from rap_edge.web._uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS

        self.memory = memory
        self.auth = auth
        self.allowed_hosts = allowed_hosts  # empty: any Host header
        self.max_upload_bytes = max_upload_bytes or MAX_UPLOAD_BYTES
        self.max_upload_pixels = max_upload_pixels or MAX_UPLOAD_PIXELS
        self.max_body_bytes = max_body_bytes
        self.sessions = Sessions()
        self.limiter = LoginLimiter()
        self._tokens: set[bytes] = set()  # sha256 of bearer passwords already verified

    def bearer_ok(self, token: str) -> bool:
        """Whether an ``Authorization: Bearer`` token is the password (cached once verified)."""
        from rap_edge.web._auth import verify_password

        digest = hashlib.sha256(token.encode("utf-8")).digest()
        if any(hmac.compare_digest(digest, t) for t in self._tokens):
            return True
        if verify_password(self.memory, token):
            self._tokens.add(digest)
            return True
        return False


def _concept_json(c: "Concept") -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "category": c.category,
        "info": c.info,
        "aliases": list(c.aliases),
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "images": [
            {
                "id": rec.id,
                "width": rec.width,
                "height": rec.height,
                "url": f"/api/images/{rec.id}",
                "face_url": f"/api/images/{rec.id}/face",
            }
            for rec in c.images
        ],
    }


def _aliases(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [a.strip() for a in text.split(",") if a.strip()]


def create_app(state: "WebState", config: WebConfig) -> "FastAPI":
    """The web app over ``state``."""
    from fastapi import FastAPI, File, Form, Query, Request, UploadFile
    from fastapi.responses import (
        JSONResponse,
        RedirectResponse,
        Response,
        StreamingResponse,
    )
    from fastapi.staticfiles import StaticFiles
    from fastapi.templating import Jinja2Templates
    from pydantic import BaseModel, Field
    from starlette.concurrency import run_in_threadpool

    from rap_edge import __version__
    from rap_edge.web._uploads import decode_upload

    app = FastAPI(
        title="rap-edge",
        version=__version__,
        description="The people, pets and things this device remembers; recognition, "
        "unknown faces, sightings and questions. Errors are JSON `{error, type, exit_code}`: "
        "4xx for a mistake in the request (the CLI's exit 1), 5xx for the environment (2).",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    templates = Jinja2Templates(directory=_HERE / "templates")
    templates.env.filters["when"] = lambda t: (
        time.strftime("%d %b %H:%M", time.localtime(float(t))) if t else "never"
    )
    app.state.web = state
    app.state.config = config

    class ConceptPatch(BaseModel):
        name: str | None = None
        category: str | None = None
        info: str | None = Field(default=None, max_length=10_000)
        aliases: list[str] | None = None

    class NameCluster(BaseModel):
        name: str = Field(min_length=1, max_length=200)
        category: str = "person"
        info: str = Field(default="", max_length=10_000)

    class MergeCluster(BaseModel):
        into: str

    # -- guards ------------------------------------------------------------------------------

    public = ("/login", "/static/", "/api/health")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        host = request.headers.get("host", "")
        if config.allowed_hosts and host not in config.allowed_hosts:
            return JSONResponse({"error": f"unexpected Host header {host!r}"}, status_code=400)
        length = request.headers.get("content-length")
        limit = config.max_body_bytes
        if length is None and "chunked" in request.headers.get("transfer-encoding", "").lower():
            # A chunked body has no size to check up front, and the multipart parser would
            # spool all of it before a handler could refuse it: such uploads are refused.
            msg = "a request body must state its size (Content-Length); chunked bodies are refused"
            return JSONResponse(
                {"error": msg, "type": "InvalidInputError", "exit_code": 1}, status_code=411
            )
        if length is not None and (not length.isdigit() or int(length) > limit):
            msg = f"the request is larger than {limit / 1e6:.1f} MB"
            return JSONResponse(
                {"error": msg, "type": "InvalidInputError", "exit_code": 1}, status_code=413
            )
        unsafe = request.method not in {"GET", "HEAD", "OPTIONS"}
        if unsafe:
            origin = request.headers.get("origin")
            site = request.headers.get("sec-fetch-site")
            if (origin and origin.split("://", 1)[-1] != host) or site in {
                "cross-site",
                "same-site",
            }:
                return JSONResponse(
                    {"error": "cross-site request refused", "exit_code": 1}, status_code=403
                )
        sid = request.cookies.get(SESSION_COOKIE)
        csrf = config.sessions.csrf(sid)
        request.state.csrf = csrf
        request.state.bearer = False
        new_sid = None
        path = request.url.path
        if csrf is None:
            authz = request.headers.get("authorization", "")
            if authz.lower().startswith("bearer ") and config.auth:
                if await run_in_threadpool(config.bearer_ok, authz[7:].strip()):
                    request.state.bearer = True
                else:
                    return JSONResponse(
                        {"error": "wrong password", "exit_code": 1}, status_code=401
                    )
            elif not config.auth and not path.startswith("/api/"):
                # This machine only: every browser gets a session (and so a CSRF token);
                # API clients without a cookie need none (cross-site requests are refused).
                new_sid, request.state.csrf = config.sessions.create()
            elif config.auth and not path.startswith(public):
                if path.startswith("/api/"):
                    return JSONResponse(
                        {
                            "error": "log in first (a session cookie, or Authorization: "
                            "Bearer PASSWORD)",
                            "exit_code": 1,
                        },
                        status_code=401,
                    )
                return RedirectResponse("/login", status_code=303)
        if (
            unsafe
            and path.startswith("/api/")
            and csrf is not None
            and not hmac.compare_digest(request.headers.get("x-csrf-token", ""), csrf)
        ):
            return JSONResponse(
                {"error": "missing or wrong X-CSRF-Token header", "exit_code": 1},
                status_code=403,
            )
        response: Response = await call_next(request)
        if new_sid is not None:
            response.set_cookie(
                SESSION_COOKIE, new_sid, httponly=True, samesite="strict", path="/"
            )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    def check_form_csrf(request: Request, token: str) -> None:
        want = request.state.csrf
        if want is None or not hmac.compare_digest(token or "", want):
            msg = "this form has expired; reload the page and try again"
            raise InvalidInputError(msg)

    @app.exception_handler(RapEdgeError)
    async def rap_edge_error(request: Request, err: RapEdgeError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(error_json(err), status_code=error_status(err))
        return page(request, "error.html", {"error": str(err)}, status=error_status(err))

    async def read_photos(files: list[UploadFile]) -> list[Any]:
        if len(files) > MAX_PHOTOS:
            msg = f"at most {MAX_PHOTOS} photos at once, got {len(files)}"
            raise InvalidInputError(msg)
        out = []
        for i, f in enumerate(files, 1):
            data = await f.read(config.max_upload_bytes + 1)
            what = f"photo #{i}"
            if not data and not f.filename:
                continue  # an empty file field
            out.append(
                await run_in_threadpool(
                    decode_upload,
                    data,
                    what,
                    max_bytes=config.max_upload_bytes,
                    max_pixels=config.max_upload_pixels,
                )
            )
        return out

    def page(
        request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200
    ) -> Response:
        ctx = {
            "csrf": getattr(request.state, "csrf", "") or "",
            "auth": config.auth,
            "cameras": state.cameras,
            "clustering": state.clusters is not None,
            "path": request.url.path,
            **(context or {}),
        }
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    # -- API: health, concepts, images -------------------------------------------------------

    @app.get("/api/health", tags=["status"])
    def health() -> dict[str, Any]:
        """Whether the cameras run, with the live runtime's counters."""
        return state.health()

    @app.get("/api/concepts", tags=["concepts"])
    def list_concepts(category: str = "") -> list[dict[str, Any]]:
        """Every concept (of one category), sorted by name, with its reference photos."""
        return [_concept_json(c) for c in state.runtime.list_concepts(category)]

    @app.post("/api/concepts", status_code=201, tags=["concepts"])
    async def create_concept(
        name: str = Form(..., max_length=200),
        category: str = Form("person", max_length=64),
        info: str = Form("", max_length=10_000),
        aliases: str = Form("", max_length=2000),
        photos: list[UploadFile] = File(default=[]),
        whole_image: bool = Form(False),  # noqa: FBT003 - a form field
    ) -> dict[str, Any]:
        """Add a concept from uploaded photos.

        A person's photos must each show one face; an object's or pet's are cut to the
        detected object unless ``whole_image``.
        """
        images = await read_photos(photos)
        concept = await run_in_threadpool(
            lambda: state.add_concept(
                name,
                category,
                info=info,
                aliases=_aliases(aliases) or [],
                images=images,
                whole_image=whole_image,
            )
        )
        return _concept_json(concept)

    @app.get("/api/concepts/{ref}", tags=["concepts"])
    def get_concept(ref: str) -> dict[str, Any]:
        """One concept by id or name."""
        return _concept_json(state.runtime.get_concept(ref))

    @app.patch("/api/concepts/{ref}", tags=["concepts"])
    def patch_concept(ref: str, patch: ConceptPatch) -> dict[str, Any]:
        """Rename, recategorise, or change info or aliases (absent fields stay)."""
        return _concept_json(
            state.update_concept(
                ref,
                name=patch.name,
                category=patch.category,
                info=patch.info,
                aliases=patch.aliases,
            )
        )

    @app.delete("/api/concepts/{ref}", tags=["concepts"])
    def delete_concept(ref: str) -> dict[str, Any]:
        """Forget a concept: its row, photos, vectors and sightings."""
        concept = state.forget(ref)
        return {"forgotten": concept.id, "name": concept.name}

    @app.post("/api/concepts/{ref}/images", status_code=201, tags=["concepts"])
    async def add_images(
        ref: str,
        photos: list[UploadFile] = File(...),
        whole_image: bool = Form(False),  # noqa: FBT003 - a form field
    ) -> dict[str, Any]:
        """Add reference photos to a concept (``whole_image``: as in creating one)."""
        images = await read_photos(photos)
        if not images:
            msg = "no photo was uploaded"
            raise InvalidInputError(msg)
        concept = await run_in_threadpool(
            lambda: state.update_concept(ref, add_images=images, whole_image=whole_image)
        )
        return _concept_json(concept)

    @app.delete("/api/concepts/{ref}/images/{image_id}", tags=["concepts"])
    def delete_image(ref: str, image_id: int) -> dict[str, Any]:
        """Remove one reference photo (not the last one)."""
        return _concept_json(state.remove_image(ref, image_id))

    @app.get("/api/images/{image_id}", tags=["concepts"], response_class=Response)
    def get_image(image_id: int) -> Response:
        """A reference photo by its id (the only way photos are served)."""
        from rap_edge.web._uploads import sniff_image

        rec = state.image_record(image_id)
        data = rec.path.read_bytes()
        try:
            media = sniff_image(data[:65536]).media_type
        except InvalidInputError:
            media = "application/octet-stream"
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/images/{image_id}/face", tags=["concepts"], response_class=Response)
    def get_face(image_id: int) -> Response:
        """The face found in a reference photo, as a JPEG (the whole photo if none)."""
        return Response(
            state.face_crop(image_id),
            media_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    # -- API: recognition, questions, cameras ------------------------------------------------

    @app.post("/api/recognise", tags=["recognition"])
    async def recognise(photo: UploadFile = File(...)) -> dict[str, Any]:
        """Recognise the people (and things) in an uploaded photo."""
        (image,) = await read_photos([photo]) or [None]
        if image is None:
            msg = "no photo was uploaded"
            raise InvalidInputError(msg)
        result = await run_in_threadpool(state.session.recognise, image, source="upload")
        return result.to_json()

    @app.post("/api/ask", tags=["recognition"])
    async def ask(
        question: str = Form(..., max_length=1000),
        camera: int | None = Form(None),
        photo: UploadFile | None = File(None),
    ) -> dict[str, Any]:
        """Answer a question about a photo, a camera's latest frame (default: any camera's),
        or the sightings log ("When did you last see Bo?").
        """
        images = await read_photos([photo]) if photo is not None else []
        image = images[0] if images else None
        return await run_in_threadpool(lambda: state.ask(question, image=image, camera=camera))

    @app.get("/api/live", tags=["cameras"])
    def live() -> list[dict[str, Any]]:
        """Each camera's latest names, recognitions and description."""
        out = []
        for cam in state.cameras:
            result = cam.result
            out.append(
                {
                    "index": cam.index,
                    "name": cam.name,
                    "frame": cam.seq,
                    "names": cam.names,
                    "recognitions": [r.to_json() for r in result.recognitions]
                    if result is not None
                    else [],
                    "description": cam.description or None,
                    "error": cam.error or None,
                }
            )
        return out

    @app.get(
        "/api/cameras/{index}/stream.mjpg", tags=["cameras"], response_class=StreamingResponse
    )
    def stream(index: int) -> StreamingResponse:
        """The camera's frames with boxes and names, as an MJPEG stream."""
        cam = state.camera(index)
        boundary = "frame-" + secrets.token_hex(8)
        return StreamingResponse(
            state.mjpeg(cam, boundary),
            media_type=f"multipart/x-mixed-replace; boundary={boundary}",
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/api/cameras/{index}/frame.jpg", tags=["cameras"], response_class=Response)
    def snapshot(index: int) -> Response:
        """The camera's latest processed frame with boxes and names."""
        cam = state.camera(index)
        jpeg = state.frame_jpeg(cam)
        if jpeg is None:
            msg = f"camera {cam.name} has no processed frame yet"
            raise ConceptNotFoundError(msg)
        return Response(jpeg[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    # -- API: strangers and sightings --------------------------------------------------------

    @app.get("/api/clusters", tags=["strangers"])
    def clusters() -> list[dict[str, Any]]:
        """Unknown-face clusters seen by the cameras, latest first."""
        if state.clusters is None:
            return []
        return [
            {**c, "crop_urls": [f"/api/clusters/{c['id']}/crops/{i}" for i in range(c["crops"])]}
            for c in state.clusters.listing()
        ]

    @app.get("/api/clusters/{cluster}/crops/{n}", tags=["strangers"], response_class=Response)
    def cluster_crop(cluster: str, n: int) -> Response:
        """A cluster's n-th best face crop (0 is the best)."""
        return Response(state.cluster_crop(cluster, n), media_type="image/jpeg")

    @app.post("/api/clusters/{cluster}/name", status_code=201, tags=["strangers"])
    def name_cluster(cluster: str, body: NameCluster) -> dict[str, Any]:
        """Enroll a cluster as a concept; its crops become the reference photos."""
        return _concept_json(
            state.name_cluster(cluster, body.name, category=body.category, info=body.info)
        )

    @app.post("/api/clusters/{cluster}/merge", tags=["strangers"])
    def merge_cluster(cluster: str, body: MergeCluster) -> dict[str, Any]:
        """Merge this cluster into another (the same stranger)."""
        return state.merge_clusters(cluster, body.into)

    @app.delete("/api/clusters/{cluster}", tags=["strangers"])
    def dismiss_cluster(cluster: str) -> dict[str, Any]:
        """Dismiss a cluster: it and its crops are deleted."""
        state.dismiss_cluster(cluster)
        return {"dismissed": cluster}

    @app.get("/api/sightings", tags=["strangers"])
    def sightings(
        concept: str | None = None, limit: int = Query(50, ge=1, le=1000)
    ) -> list[dict[str, Any]]:
        """Who or what was seen, when, and by which camera (newest first)."""
        if state.sightings is None:
            return []
        cid = state.runtime.get_concept(concept).id if concept else None
        state.sightings.wait_idle(2.0)
        return [s.to_json() for s in state.sightings.recent(cid, limit)]

    # -- pages -------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return RedirectResponse("/people", status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request) -> Response:
        return page(request, "login.html", {"title": "Log in"})

    @app.post("/login", include_in_schema=False)
    def login(request: Request, password: str = Form("", max_length=1000)) -> Response:
        from rap_edge.web._auth import verify_password

        client = request.client.host if request.client else "?"
        wait = config.limiter.retry_after(client)
        if wait > 0:
            msg = f"too many wrong passwords; try again in {int(wait) + 1} s"
            resp = page(request, "login.html", {"title": "Log in", "error": msg}, status=429)
            resp.headers["Retry-After"] = str(int(wait) + 1)
            return resp
        if not config.auth:
            return RedirectResponse("/people", status_code=303)
        if not verify_password(config.memory, password):
            config.limiter.failed(client)
            return page(
                request, "login.html", {"title": "Log in", "error": "wrong password"}, status=401
            )
        config.limiter.succeeded(client)
        sid, _ = config.sessions.create()
        resp = RedirectResponse("/people", status_code=303)
        resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", path="/")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf_token: str = Form("")) -> Response:
        check_form_csrf(request, csrf_token)
        config.sessions.drop(request.cookies.get(SESSION_COOKIE))
        resp = RedirectResponse("/login" if config.auth else "/people", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @app.get("/people", include_in_schema=False)
    def people(request: Request) -> Response:
        return page(
            request,
            "people.html",
            {"title": "People and things", "concepts": state.runtime.list_concepts()},
        )

    @app.post("/people", include_in_schema=False)
    async def people_add(
        request: Request,
        csrf_token: str = Form(""),
        name: str = Form("", max_length=200),
        category: str = Form("person", max_length=64),
        info: str = Form("", max_length=10_000),
        aliases: str = Form("", max_length=2000),
        photos: list[UploadFile] = File(default=[]),
        whole_image: str = Form(""),
    ) -> Response:
        form = {
            "name": name,
            "category": category,
            "info": info,
            "aliases": aliases,
            "whole_image": whole_image,
        }
        try:
            check_form_csrf(request, csrf_token)
            if not name.strip():
                msg = "give a name"
                raise InvalidInputError(msg)
            images = await read_photos(photos)
            if not images:
                msg = "add at least one photo"
                raise InvalidInputError(msg)
            concept = await run_in_threadpool(
                lambda: state.add_concept(
                    name.strip(),
                    category.strip() or "person",
                    info=info,
                    aliases=_aliases(aliases) or [],
                    images=images,
                    whole_image=bool(whole_image),
                )
            )
        except RapEdgeError as err:
            ctx = {
                "title": "People and things",
                "concepts": state.runtime.list_concepts(),
                "error": str(err),
                "form": form,
            }
            return page(request, "people.html", ctx, status=error_status(err))
        return RedirectResponse(f"/people/{concept.id}?added=1", status_code=303)

    @app.get("/people/{ref}", include_in_schema=False)
    def person(request: Request, ref: str, added: int = 0) -> Response:
        concept = state.runtime.get_concept(ref)
        seen = state.sightings.recent(concept.id, 10) if state.sightings else []
        return page(
            request,
            "person.html",
            {"title": concept.name, "c": concept, "added": added, "sightings": seen},
        )

    def person_error(request: Request, ref: str, err: RapEdgeError) -> Response:
        concept = state.runtime.get_concept(ref)
        seen = state.sightings.recent(concept.id, 10) if state.sightings else []
        ctx = {"title": concept.name, "c": concept, "error": str(err), "sightings": seen}
        return page(request, "person.html", ctx, status=error_status(err))

    @app.post("/people/{ref}", include_in_schema=False)
    def person_edit(
        request: Request,
        ref: str,
        csrf_token: str = Form(""),
        name: str = Form("", max_length=200),
        info: str = Form("", max_length=10_000),
        aliases: str = Form("", max_length=2000),
    ) -> Response:
        try:
            check_form_csrf(request, csrf_token)
            concept = state.update_concept(
                ref, name=name.strip() or None, info=info, aliases=_aliases(aliases)
            )
        except RapEdgeError as err:
            return person_error(request, ref, err)
        return RedirectResponse(f"/people/{concept.id}", status_code=303)

    @app.post("/people/{ref}/photos", include_in_schema=False)
    async def person_photos(
        request: Request,
        ref: str,
        csrf_token: str = Form(""),
        photos: list[UploadFile] = File(default=[]),
    ) -> Response:
        try:
            check_form_csrf(request, csrf_token)
            images = await read_photos(photos)
            if not images:
                msg = "choose a photo to add"
                raise InvalidInputError(msg)
            concept = await run_in_threadpool(lambda: state.update_concept(ref, add_images=images))
        except RapEdgeError as err:
            return person_error(request, ref, err)
        return RedirectResponse(f"/people/{concept.id}?added={len(images)}", status_code=303)

    @app.post("/people/{ref}/photos/{image_id}/remove", include_in_schema=False)
    def person_photo_remove(
        request: Request, ref: str, image_id: int, csrf_token: str = Form("")
    ) -> Response:
        try:
            check_form_csrf(request, csrf_token)
            concept = state.remove_image(ref, image_id)
        except RapEdgeError as err:
            return person_error(request, ref, err)
        return RedirectResponse(f"/people/{concept.id}", status_code=303)

    @app.get("/people/{ref}/forget", include_in_schema=False)
    def forget_page(request: Request, ref: str) -> Response:
        concept = state.runtime.get_concept(ref)
        return page(request, "forget.html", {"title": f"Forget {concept.name}?", "c": concept})

    @app.post("/people/{ref}/forget", include_in_schema=False)
    def forget(
        request: Request, ref: str, csrf_token: str = Form(""), confirm: str = Form("")
    ) -> Response:
        check_form_csrf(request, csrf_token)
        if confirm != "yes":
            return RedirectResponse(f"/people/{ref}", status_code=303)
        concept = state.forget(ref)
        return page(
            request,
            "people.html",
            {
                "title": "People and things",
                "concepts": state.runtime.list_concepts(),
                "notice": f"{concept.name} was forgotten: photos, face data and sightings "
                "are deleted.",
            },
        )

    @app.get("/strangers", include_in_schema=False)
    def strangers(request: Request) -> Response:
        listing = state.clusters.listing() if state.clusters is not None else []
        return page(request, "strangers.html", {"title": "Strangers", "clusters": listing})

    def strangers_after(request: Request, notice: str = "", error: str = "") -> Response:
        listing = state.clusters.listing() if state.clusters is not None else []
        ctx = {"title": "Strangers", "clusters": listing, "notice": notice, "error": error}
        return page(request, "strangers.html", ctx, status=400 if error else 200)

    @app.post("/strangers/{cluster}/name", include_in_schema=False)
    def strangers_name(
        request: Request,
        cluster: str,
        csrf_token: str = Form(""),
        name: str = Form("", max_length=200),
    ) -> Response:
        try:
            check_form_csrf(request, csrf_token)
            if not name.strip():
                msg = "give a name"
                raise InvalidInputError(msg)
            concept = state.name_cluster(cluster, name.strip())
        except RapEdgeError as err:
            return strangers_after(request, error=str(err))
        return RedirectResponse(f"/people/{concept.id}?added=1", status_code=303)

    @app.post("/strangers/{cluster}/merge", include_in_schema=False)
    def strangers_merge(
        request: Request, cluster: str, csrf_token: str = Form(""), into: str = Form("")
    ) -> Response:
        try:
            check_form_csrf(request, csrf_token)
            state.merge_clusters(cluster, into)
        except RapEdgeError as err:
            return strangers_after(request, error=str(err))
        return strangers_after(request, notice=f"merged {cluster} into {into}")

    @app.post("/strangers/{cluster}/dismiss", include_in_schema=False)
    def strangers_dismiss(request: Request, cluster: str, csrf_token: str = Form("")) -> Response:
        try:
            check_form_csrf(request, csrf_token)
            state.dismiss_cluster(cluster)
        except RapEdgeError as err:
            return strangers_after(request, error=str(err))
        return strangers_after(request, notice=f"dismissed {cluster}; its photos are deleted")

    @app.get("/live", include_in_schema=False)
    def live_page(request: Request) -> Response:
        return page(request, "live.html", {"title": "Live"})

    @app.post("/live/ask", include_in_schema=False)
    def live_ask(
        request: Request,
        csrf_token: str = Form(""),
        question: str = Form("", max_length=1000),
        camera: str = Form(""),
    ) -> Response:
        try:
            check_form_csrf(request, csrf_token)
            cam = int(camera) if camera.isdigit() else None
            answer = state.ask(question, camera=cam)
        except RapEdgeError as err:
            return page(request, "live.html", {"title": "Live", "error": str(err)}, status=400)
        return page(request, "live.html", {"title": "Live", "answer": answer})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    return app
