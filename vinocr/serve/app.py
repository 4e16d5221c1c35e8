"""The ASGI application: reads, corrections, fine-tune jobs, model versions, health and metrics.

``create_app(settings)`` builds it; ``vinocr-serve`` runs it on uvicorn. Every request-supplied
name that could become a path (model versions, job ids, read ids) is checked against a strict
pattern before it is used, uploads are size-, type- and decode-checked, and user errors answer
``{"error": "one line"}`` with a 4xx status.
"""
from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from vinocr.decode.factory import METHODS as DECODE_METHODS
from vinocr.errors import ConfigError, DataError, VinocrError
from vinocr.serve.corrections import CorrectionStore, RecentReads, check_text
from vinocr.serve.images import (DecodedImage, ImageLimits, UploadError, check_content_type,
                                 decode_base64, decode_image)
from vinocr.serve.jobs import JobConflict, JobManager, JobSettings
from vinocr.serve.metrics import CONTENT_TYPE, Metrics
from vinocr.serve.models import ModelStore, NotFound, ReadBatcher

logger = logging.getLogger(__name__)

REVIEW_PAGE = Path(__file__).with_name("review.html")
#: Multipart overhead allowed per request on top of the images themselves.
FORM_OVERHEAD = 64 * 1024
TOKEN_ENV = "VINOCR_SERVE_TOKEN"


@dataclass
class ServeSettings:
    """Everything ``vinocr-serve`` configures (see ``vinocr-serve --help``)."""

    model: Path
    data_dir: Path
    token: Optional[str] = None
    limits: ImageLimits = field(default_factory=ImageLimits)
    max_images: int = 32
    max_batch: int = 16
    max_wait_ms: float = 0.0
    max_request_bytes: int = 16 * 1024 * 1024
    threads: int = 1
    backend: str = "auto"
    recent_reads: int = 200
    jobs: JobSettings = field(default_factory=JobSettings)


class _Service:
    """The per-process state the endpoints share (one model load per worker process)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        data = Path(settings.data_dir)
        self.models = ModelStore(data / "models")
        self.batcher = ReadBatcher(settings.max_batch, settings.max_wait_ms / 1000.0,
                                   settings.threads, settings.backend)
        self.recent = RecentReads(settings.recent_reads)
        self.corrections = CorrectionStore(data / "corrections")
        self.jobs = JobManager(data / "jobs", self.corrections.root, self.models, settings.jobs,
                               on_exported=self._job_exported)
        self.metrics = Metrics()
        self.metrics.gauge("vinocr_read_queue_images", "Images queued or being recognised.",
                           lambda: float(self.batcher.queued_images))
        self.metrics.gauge("vinocr_read_batches_total", "Recogniser batches run (images read / "
                           "batches = mean batch size).", lambda: float(self.batcher.batches),
                           kind="counter")
        self.metrics.gauge("vinocr_jobs_queued", "Fine-tune jobs waiting to start.",
                           lambda: float(self.jobs.queue_length()))
        self._activate_lock = threading.Lock()

    def start_models(self) -> None:
        """Register ``--model`` (first start: as the active version) and load the active one."""
        version = self.models.register(Path(self.settings.model), source="--model")
        if self.models.active is None or self.models.active not in self.models.versions():
            self.models.set_active(version)
        active = self.models.active
        try:
            self.batcher.load(active, self.models.path_of(active))
        except VinocrError as exc:
            if active == version:
                raise
            # A version whose directory was removed or damaged must not keep the service down.
            logger.error("active model %s cannot be loaded (%s): serving --model (%s) instead",
                         active, exc, version)
            self.batcher.load(version, self.models.path_of(version))
            self.models.set_active(version)

    def _activate(self, version: str) -> None:
        # One lock for the request path and the job thread, so the version served and the one
        # the registry calls active cannot end up different when two activations overlap.
        path = self.models.path_of(version)
        with self._activate_lock:
            self.batcher.load(version, path)
            self.models.set_active(version)

    def _job_exported(self, version: str, job: Dict[str, Any]) -> None:
        if job.get("activate"):
            self._activate(version)

    async def activate(self, version: str) -> None:
        self.models.path_of(version)        # a 404 for an unknown version, before any thread
        await run_in_threadpool(self._activate, version)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _bool_field(value: Any, name: str) -> Optional[bool]:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UploadError(f"{name}: expected true or false, got {value!r}")


def _decode_field(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value not in DECODE_METHODS:
        raise UploadError(f"decode: {value!r} is not one of {', '.join(DECODE_METHODS)}")
    return value


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (also without a
    Content-Length, e.g. chunked uploads)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise UploadError(f"request body of {declared} bytes is more than the limit of {limit}",
                          status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadError(f"request body is more than the limit of {limit} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(body: bytes, empty: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A JSON object body (``empty`` for an empty body, if given); 400 for anything else."""
    if not body.strip() and empty is not None:
        return dict(empty)
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UploadError(f"request body: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise UploadError("request body: expected a JSON object")
    return doc


async def _parse(request: Request, limit: int, max_files: int
                 ) -> Tuple[Dict[str, Any], List[Tuple[str, Optional[str], bytes]]]:
    """``(fields, files)`` of a multipart or JSON body; files are ``(name, content type, bytes)``
    with base64 JSON images decoded."""
    body = await _read_body(request, limit)
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        doc = _json_object(body)
        images = doc.pop("images", None)
        if images is None and "image" in doc:
            images = [doc.pop("image")]
        if images is not None and not isinstance(images, list):
            raise UploadError("images: expected a list of base64 strings")
        files = [(f"images[{k}]", None, decode_base64(v, f"images[{k}]"))
                 for k, v in enumerate(images or [])]
        return doc, files
    if ctype == "multipart/form-data":
        async def replay() -> Dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=max_files + 1,
                                                             max_fields=32)
        except Exception as exc:  # the multipart parser's own errors are all malformed bodies
            status = getattr(exc, "status_code", 400)
            raise UploadError(f"multipart body: {getattr(exc, 'detail', None) or exc}",
                              status=status if 400 <= status < 500 else 400) from None
        fields: Dict[str, Any] = {}
        files = []
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                name = f"{key}:{value.filename or len(files)}"
                files.append((name, value.content_type, await value.read()))
            else:
                fields[key] = value
        await form.close()
        return fields, files
    raise UploadError(f"content type {ctype or 'none'!r}: send multipart/form-data (image "
                      "files) or application/json (base64 images)", status=415)


def _decode_all(files: List[Tuple[str, Optional[str], bytes]], limits: ImageLimits
                ) -> List[DecodedImage]:
    out = []
    for name, ctype, data in files:
        check_content_type(ctype, name)
        out.append(decode_image(data, name, limits))
    return out


#: Paths served without the bearer token: probes, the schema, and the (data-free) review page.
OPEN_PATHS = ("/healthz", "/review", "/openapi.json")


class _AuthAndMetrics:
    """Pure ASGI middleware: the bearer-token check, then request counts and latency by route
    template (``/v1/jobs/{job_id}``, so ids do not multiply the series). Plain ASGI rather than
    ``@app.middleware``: that one re-wraps every request and response, a cost per read."""

    def __init__(self, app: Any, metrics: Metrics, token: Optional[str]) -> None:
        self.app, self.metrics = app, metrics
        self.token = token.encode("utf-8") if token else None

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method = scope.get("method", "")
        if self.token is not None and scope.get("path") not in OPEN_PATHS:
            header = dict(scope.get("headers") or []).get(b"authorization", b"")
            given = header[7:] if header[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(given, self.token):
                response = JSONResponse(
                    {"error": "missing or wrong bearer token (send Authorization: Bearer TOKEN)"},
                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                self.metrics.observe(method, "unauthorised", 401, time.perf_counter() - start)
                return
        status = 500

        async def send_status(message: Dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router records the matched route in the scope it was handed (this one).
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(method, route, status, time.perf_counter() - start)


def create_app(settings: ServeSettings) -> FastAPI:
    """The service for ``settings``; the model is loaded and the job worker started when the
    server starts the app (its lifespan), once per worker process."""
    import contextlib

    svc = _Service(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(svc.start_models)
        await svc.batcher.start()
        svc.jobs.start()
        try:
            yield
        finally:
            await run_in_threadpool(svc.jobs.stop)
            await svc.batcher.stop()

    app = FastAPI(title="vinocr-serve", version="1",
                  description="Reads VIN and licence-plate crops with an exported vinocr model, "
                              "stores reviewer corrections and fine-tunes new model versions "
                              "from them.",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = svc
    limits = settings.limits
    # Base64 JSON is 4/3 of the bytes; the request cap keeps many large images out of memory.
    read_limit = min(settings.max_images * limits.max_bytes * 4 // 3 + FORM_OVERHEAD,
                     settings.max_request_bytes)
    one_limit = limits.max_bytes * 4 // 3 + FORM_OVERHEAD

    app.add_middleware(_AuthAndMetrics, metrics=svc.metrics, token=settings.token)

    @app.exception_handler(VinocrError)
    async def user_error(request: Request, exc: VinocrError) -> JSONResponse:
        if isinstance(exc, UploadError):
            status = exc.status
        elif isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, (JobConflict, DataError)):
            status = 409
        else:
            status = 400
        return _error(status, str(exc).replace("\n", " "))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    # ------------------------------------------------------------------------------ health
    @app.get("/healthz", summary="Liveness and the active model")
    async def healthz() -> Dict[str, Any]:
        model = svc.batcher.model
        return {"status": "ok" if model is not None else "loading",
                "model_version": model.version if model else None,
                "read_queue_images": svc.batcher.queued_images}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

    # -------------------------------------------------------------------------------- reads
    read_body = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "decode": {"type": "string", "enum": list(DECODE_METHODS)},
            "dynamic_width": {"type": "boolean"}}, "required": ["image"]}},
        "application/json": {"schema": {"type": "object", "properties": {
            "images": {"type": "array", "items": {"type": "string", "format": "byte"}},
            "decode": {"type": "string", "enum": list(DECODE_METHODS)},
            "dynamic_width": {"type": "boolean"}}, "required": ["images"]}}}}}

    @app.post("/v1/read", summary="Recognise one or several crops", openapi_extra=read_body)
    async def read(request: Request) -> Dict[str, Any]:
        fields, files = await _parse(request, read_limit, settings.max_images)
        if not files:
            raise UploadError("no image: send one or more 'image' file parts (multipart) or "
                              "an 'images' list of base64 strings (JSON)")
        if len(files) > settings.max_images:
            raise UploadError(f"{len(files)} images is more than the limit of "
                              f"{settings.max_images} per request", status=413)
        decode = _decode_field(fields.get("decode", request.query_params.get("decode")))
        dynamic = _bool_field(fields.get("dynamic_width",
                                         request.query_params.get("dynamic_width")),
                              "dynamic_width")
        images = _decode_all(files, limits)
        version, results = await svc.batcher.read([im.image for im in images], decode, dynamic)
        svc.metrics.count_images(len(images))
        out = []
        for (name, _, _), image, result in zip(files, images, results):
            record = result.to_dict()
            read_id = svc.recent.add(version, record, image)
            out.append({"read_id": read_id, "name": name, "width": int(image.image.shape[1]),
                        "height": int(image.image.shape[0]), **record})
        return {"model_version": version, "results": out}

    @app.get("/v1/reads/recent", summary="Recent reads, lowest confidence first")
    async def recent(limit: int = 20, include_corrected: bool = False) -> Dict[str, Any]:
        limit = max(1, min(int(limit), settings.recent_reads))
        return {"reads": [{"read_id": r.read_id, "text": r.result.get("text"),
                           "confidence": r.result.get("confidence"), "model_version": r.version,
                           "corrected": r.corrected,
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S",
                                                    time.localtime(r.created)),
                           "image_url": f"/v1/reads/{r.read_id}/image"}
                          for r in svc.recent.lowest_confidence(limit, include_corrected)]}

    @app.get("/v1/reads/{read_id}/image", summary="The image of a recent read",
             response_class=Response)
    async def read_image(read_id: str) -> Response:
        record = svc.recent.get(read_id)
        media = "image/jpeg" if record.image.format == "JPEG" else \
            f"image/{record.image.format.lower()}"
        return Response(record.image.data, media_type=media)

    # -------------------------------------------------------------------------- corrections
    correction_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "properties": {
            "text": {"type": "string"}, "read_id": {"type": "string"},
            "image": {"type": "string", "format": "byte"}, "predicted": {"type": "string"},
            "reviewer": {"type": "string"}}, "required": ["text"]}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "image": {"type": "string", "format": "binary"}, "text": {"type": "string"},
            "predicted": {"type": "string"}, "reviewer": {"type": "string"}},
            "required": ["image", "text"]}}}}}

    @app.post("/v1/corrections", status_code=201, openapi_extra=correction_body,
              summary="Store a corrected text for a recent read or an uploaded image")
    async def correct(request: Request) -> Dict[str, Any]:
        fields, files = await _parse(request, one_limit, 1)
        model = svc.batcher.model
        if model is None:
            raise VinocrError("no model is loaded yet")
        text = check_text(fields.get("text"), model.recognizer.charset)
        read_id = fields.get("read_id")
        if read_id is not None:
            if files:
                raise UploadError("give read_id or an image, not both")
            record = svc.recent.get(read_id)
            stored = svc.corrections.add(
                record.image, text, predicted=record.result.get("text"),
                confidence=record.result.get("confidence"), reviewer=fields.get("reviewer"),
                model_version=record.version, read_id=record.read_id)
            record.corrected = text
            return stored
        if len(files) != 1:
            raise UploadError("send one image (or the read_id of a recent read) with the text")
        image = _decode_all(files, limits)[0]
        predicted = fields.get("predicted")
        if predicted is not None and not isinstance(predicted, str):
            raise UploadError("predicted: expected a string")
        return svc.corrections.add(image, text, predicted=predicted,
                                   reviewer=fields.get("reviewer"))

    @app.get("/v1/corrections/stats", summary="What the corrections folder holds")
    async def correction_stats() -> Dict[str, Any]:
        return await run_in_threadpool(svc.corrections.stats)

    # -------------------------------------------------------------------------------- jobs
    job_body = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": {
            "config": {"type": "object", "description": "config sections over the service's "
                       "--job-config (Train.epochs, Optimizer, Scheduler, Technique, ...)"},
            "activate": {"type": "boolean", "description": "activate the exported version "
                         "when the job succeeds"}}}}}}}

    @app.post("/v1/jobs/finetune", status_code=202, openapi_extra=job_body,
              summary="Queue a fine-tune on the stored corrections (and the base datasets)")
    async def finetune(request: Request) -> Dict[str, Any]:
        doc = _json_object(await _read_body(request, FORM_OVERHEAD), empty={})
        unknown = sorted(set(doc) - {"config", "activate"})
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown field (valid: activate, config)")
        activate = _bool_field(doc.get("activate"), "activate") or False
        return await run_in_threadpool(svc.jobs.submit, doc.get("config"), activate)

    @app.get("/v1/jobs", summary="All jobs, oldest first")
    async def jobs() -> Dict[str, Any]:
        found = await run_in_threadpool(svc.jobs.all_jobs)
        return {"jobs": [{k: j.get(k) for k in ("id", "state", "created", "version", "error")}
                         for j in found]}

    @app.get("/v1/jobs/{job_id}", summary="A job's state, progress, metrics and log tail")
    async def job(job_id: str) -> Dict[str, Any]:
        return await run_in_threadpool(svc.jobs.status, job_id)

    @app.post("/v1/jobs/{job_id}/cancel", summary="Cancel a queued or running job")
    async def cancel(job_id: str) -> Dict[str, Any]:
        return await run_in_threadpool(svc.jobs.cancel, job_id)

    @app.post("/v1/jobs/{job_id}/resume",
              summary="Resume an interrupted, cancelled or failed job (vinocr-finetune --resume)")
    async def resume(job_id: str) -> Dict[str, Any]:
        return await run_in_threadpool(svc.jobs.resume, job_id)

    # ------------------------------------------------------------------------------ models
    @app.get("/v1/models", summary="Model versions, the active one and the rollback target")
    async def models() -> Dict[str, Any]:
        serving = svc.batcher.model
        return {"active": svc.models.active, "previous": svc.models.previous,
                "serving": serving.version if serving else None,
                "versions": [{"version": v, **e} for v, e in sorted(svc.models.versions().items())]}

    @app.post("/v1/models/{version}/activate", summary="Serve this version from now on")
    async def activate(version: str) -> Dict[str, Any]:
        await svc.activate(version)
        return {"active": svc.models.active, "previous": svc.models.previous}

    # ------------------------------------------------------------------------------ review
    @app.get("/review", response_class=HTMLResponse, include_in_schema=False)
    async def review() -> HTMLResponse:
        return HTMLResponse(REVIEW_PAGE.read_text(encoding="utf-8"))

    return app
