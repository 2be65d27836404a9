"""The gateway's HTTP API (FastAPI): OpenAI's chat completions and models, health, metrics, docs.

`create_web_app(settings, deps)` builds the ASGI app over the gateway's ports; `app.py` serves it with
uvicorn beside the service's lifecycle, tests call it in process (httpx's ASGI transport). Every error
is in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so OpenAI clients raise their
usual exceptions (401 AuthenticationError, 429 RateLimitError, 400 BadRequestError, ...).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time, and
# the key dependency is local to create_web_app.
import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from ragbus.common.errors import DependencyUnavailable
from ragbus.common.logging import get_logger
from ragbus.gateway import domain, usecases
from ragbus.gateway.domain import ChatCompletionRequest, GatewayError
from ragbus.gateway.ports import ApiKey, DocumentState, RequestFilter
from ragbus.gateway.ports import Scope as KeyScope
from ragbus.gateway.ratelimit import RateLimiter
from ragbus.gateway.settings import GatewaySettings
from ragbus.gateway.usecases import GatewayDeps, KeyCache

log = get_logger("ragbus.gateway.web")

M = TypeVar("M", bound=BaseModel)
DepsProvider = Callable[[], GatewayDeps]
HealthProvider = Callable[[], Awaitable[Mapping[str, str]]]


class Metrics:
    """Prometheus metrics in a registry of the app's own (several apps in one process, as in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ragbus_gateway_requests",
            "HTTP requests, by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "ragbus_gateway_request_seconds",
            "Time from request to the response's end (a stream: its last frame), by route",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.streams = Gauge("ragbus_gateway_streams", "Streams open now", registry=self.registry)
        self.answers = Counter(
            "ragbus_gateway_answers",
            "Chat completions by outcome (answered, blocked, failed, error)",
            ["outcome"],
            registry=self.registry,
        )


class _MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.seconds.labels(route).observe(time.perf_counter() - started)


class _BodyLimit:
    """413 for a body over `limit` bytes: at once by its Content-Length, else while it is read."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than {self.limit} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            body = domain.error_body(message, "invalid_request_error", "request_too_large")
            await JSONResponse(body, 413)(scope, receive, send)
            return
        seen = 0

        async def receiving() -> Message:
            nonlocal seen
            got = await receive()
            seen += len(got.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, message)  # FastAPI passes HTTPExceptions from the body through
            return got

        await self.app(scope, receiving, send)


# The web app (chat, documents, audit): static files in the package, served as they are (no build step,
# nothing from a CDN), calling the API above with the key the user keeps in the browser.
WEBAPP = Path(__file__).with_name("webapp")


class _WebApp(StaticFiles):
    """The web app's files, with a policy that lets a page load and call nothing but this server."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"  # revalidated: an upgraded gateway serves its own
        return response


def _error(exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.body(), exc.status, headers=exc.headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def create_web_app(
    settings: GatewaySettings,
    deps: GatewayDeps | DepsProvider,
    health: HealthProvider | None = None,
    *,
    limiter: RateLimiter | None = None,
    key_cache: KeyCache | None = None,
) -> FastAPI:
    """The ASGI app. `deps`: the gateway's dependencies, or a function that returns them once open
    (DependencyUnavailable meanwhile: 503). `health`: each dependency's state ("ok" or the error)."""
    provide: DepsProvider = deps if callable(deps) else (lambda: deps)
    limiter = limiter or RateLimiter()
    cache = key_cache or KeyCache(settings.key_cache_s)
    metrics = Metrics()
    try:
        release = version("ragbus-gateway")
    except PackageNotFoundError:
        release = "0.0.0"
    app = FastAPI(
        title="ragbus gateway",
        version=release,
        description="OpenAI-compatible HTTP API of a ragbus stack: answers with citations from the "
        "tenant's documents. Authenticate with `Authorization: Bearer <key>` (`ragbus keys create`).",
        docs_url=None,  # served below from the packaged Swagger UI files, not a CDN
        redoc_url=None,
    )
    app.state.metrics = metrics
    app.mount("/docs/static", StaticFiles(directory=swagger_ui_path), name="swagger-ui")
    app.mount("/app", _WebApp(directory=WEBAPP, html=True), name="webapp")

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/app/")

    @app.exception_handler(GatewayError)
    async def on_gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
        body = domain.error_body(str(exc.detail), kind, _HTTP_CODES.get(exc.status_code))
        return JSONResponse(body, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse(domain.error_body(f"invalid request: {problems}", "invalid_request_error"), 400)

    @app.exception_handler(DependencyUnavailable)
    async def on_unavailable(request: Request, exc: DependencyUnavailable) -> JSONResponse:
        body = domain.error_body(f"the gateway is not ready: {exc}", "server_error", "unavailable")
        return JSONResponse(body, 503, headers={"Retry-After": "5"})

    async def api_key(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> ApiKey:
        key = await usecases.authenticate(provide().keys, cache, authorization, x_api_key)
        request.state.key_id = key.key_id
        return key

    def allowed(scope: KeyScope | None) -> Callable[[ApiKey], Awaitable[ApiKey]]:
        """A valid key (401), with `scope` (403), within its rate (429), in that order."""

        async def checked(key: Annotated[ApiKey, Depends(api_key)]) -> ApiKey:
            if scope is not None:
                usecases.authorize(key, scope)
            usecases.check_rate(limiter, key, settings.rate_per_minute, settings.rate_burst)
            return key

        return checked

    # The key of a request, by what the endpoint needs of it (types, named as such).
    Key = Annotated[ApiKey, Depends(allowed(None))]  # noqa: N806
    Asker = Annotated[ApiKey, Depends(allowed("ask"))]  # noqa: N806
    Ingester = Annotated[ApiKey, Depends(allowed("ingest"))]  # noqa: N806
    Auditor = Annotated[ApiKey, Depends(allowed("audit"))]  # noqa: N806
    max_message_bytes = settings.kafka.max_request_size

    @app.get("/v1/models", tags=["openai"])
    async def list_models(key: Key) -> dict[str, Any]:
        """The models this gateway answers as (names for the stack; the cascade picks the model)."""
        return domain.model_list(settings.models)

    @app.get("/v1/models/{model}", tags=["openai"])
    async def get_model(model: str, key: Key) -> dict[str, Any]:
        if model not in settings.models:
            raise GatewayError(404, f"the model {model!r} does not exist", code="model_not_found")
        listed: dict[str, Any] = domain.model_list([model])["data"][0]
        return listed

    @app.post(
        "/v1/chat/completions",
        tags=["openai"],
        responses={200: {"content": {"text/event-stream": {}}, "description": "a completion, or its stream"}},
    )
    async def chat_completions(body: ChatCompletionRequest, key: Asker) -> Response:
        """OpenAI's chat completion. The last message is the question; `conversation_id` (an extra
        field) names the conversation for follow-ups. The answer's citations are in
        `choices[0].message.citations` (streamed: the last chunk's `choices[0].delta.citations`) and as
        numbered sources after the text; `ragbus` holds the query id, tier, cost and trace id."""
        if body.model not in settings.models:
            raise GatewayError(
                404,
                f"the model {body.model!r} does not exist; use one of {', '.join(settings.models)}",
                code="model_not_found",
                param="model",
            )
        answerer = provide().answerer
        if not body.stream:
            try:
                completion = await usecases.complete(answerer, key, body)
            except GatewayError as exc:
                metrics.answers.labels(_outcome(exc)).inc()
                raise
            metrics.answers.labels("answered").inc()
            return JSONResponse(completion)
        try:
            frames = await usecases.stream(answerer, key, body)
        except GatewayError as exc:
            metrics.answers.labels(_outcome(exc)).inc()
            raise

        async def counted() -> Any:
            metrics.streams.inc()
            try:
                async for frame in frames:
                    yield frame
            finally:
                metrics.streams.dec()

        metrics.answers.labels("streamed").inc()
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(counted(), media_type="text/event-stream", headers=headers)

    @app.post("/v1/feedback", tags=["ragbus"])
    async def post_feedback(body: domain.FeedbackRequest, key: Asker) -> dict[str, Any]:
        """Rate an answer (`up` or `down`, with an optional comment) by its query id; waits until the
        monitor has it on record. `known`: whether the key's tenant asked that question."""
        return await usecases.feedback(provide().answerer, key, body)

    indexing: set[asyncio.Task[DocumentState]] = set()  # held, so a running one is not collected

    @app.post("/v1/documents", tags=["ragbus"], status_code=202, openapi_extra=_DOCUMENT_BODIES)
    async def post_document(request: Request, key: Ingester) -> JSONResponse:
        """Submit a document for the key's tenant: text as JSON, or a file as `multipart/form-data`
        (`file`, in any format the ingest service reads: PDF, DOCX, HTML, Markdown, text, CSV, JSON;
        the JSON request's other fields beside it). 202 at once with its state (`submitted`), then
        `GET /v1/documents/{id}` says when it is `indexed` (or `skipped` as a near duplicate, or
        `failed` and why); with `wait` true, 201 once it is indexed. 413 over GATEWAY_MAX_BODY_BYTES,
        or when the document would not fit in one message on the bus."""
        body = await _document_body(request)
        deps = provide()
        state = await usecases.submit_document(deps, key, body, max_message_bytes=max_message_bytes)
        task = asyncio.create_task(usecases.index_document(deps, state, body))
        indexing.add(task)
        task.add_done_callback(indexing.discard)
        location = {"Location": f"/v1/documents/{body.doc_id}"}
        if not body.wait:
            return JSONResponse(domain.document_json(state), 202, headers=location)
        done = await asyncio.shield(task)  # a client that leaves does not stop the indexing
        return JSONResponse(
            domain.document_json(done), 201 if done.status != "failed" else 502, headers=location
        )

    @app.get("/v1/documents", tags=["ragbus"])
    async def list_documents(
        key: Ingester, limit: Annotated[int, Query(ge=1, le=1000)] = 200
    ) -> dict[str, Any]:
        """The key's tenant's documents submitted through the gateway and not deleted, the latest
        first, each with its state as in `GET /v1/documents/{id}`."""
        found = await usecases.documents(provide(), key, limit)
        return {"object": "list", "data": [domain.document_json(d) for d in found]}

    @app.get("/v1/documents/{doc_id}", tags=["ragbus"])
    async def get_document(doc_id: str, key: Ingester) -> dict[str, Any]:
        """Where a document submitted through the gateway is: `submitted`, `indexed` (with its version
        and chunks), `skipped`, `failed` (with the reason) or `deleted`. Only the key's tenant's."""
        return domain.document_json(await usecases.document(provide(), key, doc_id))

    @app.delete("/v1/documents/{doc_id}", tags=["ragbus"])
    async def delete_document(doc_id: str, key: Ingester) -> dict[str, Any]:
        """Remove a document of the key's tenant from the index, every version; waits until it is out."""
        return await usecases.delete_document(provide(), key, doc_id)

    @app.get("/v1/requests/{request_id}", tags=["ragbus"])
    async def get_request(request_id: str, key: Auditor) -> dict[str, Any]:
        """A request's story from the monitor's record: the question (as asked, and as the input guard
        passed it on), the guards' verdicts, the answer, the tiers tried with model, prompt version,
        tokens and cost, each service's stage, the sources read with their document versions, the
        trace id and the latest rating. By query id (or a completion's `id`); only the key's tenant's:
        another tenant's request is a 404."""
        return await usecases.request_story(provide(), key, request_id)

    @app.get("/v1/requests/{request_id}/trace", tags=["ragbus"])
    async def get_request_trace(request_id: str, key: Auditor) -> dict[str, Any]:
        """A request's trace from its spans (the local span file of the embedded stack, or Jaeger's
        query API): each span's name, service, kind, status, start, offset from the first span and
        duration in ms, parent, and its ragbus, messaging, model and error attributes; `jaeger_url`
        opens the trace in Jaeger's UI when the gateway reads from one. Only the key's tenant's
        requests (another tenant's is a 404, as for the story); no spans (yet): an empty list."""
        return await usecases.request_trace(provide(), key, request_id)

    @app.get("/v1/requests", tags=["ragbus"])
    async def list_requests(
        key: Auditor,
        status: Annotated[str | None, Query(pattern="^(answered|blocked|failed|pending)$")] = None,
        tier: Annotated[int | None, Query(ge=0)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """The key's tenant's requests, newest first, filtered by status, tier and submission time
        (ISO 8601; without a zone, UTC); each as in `GET /v1/requests/{id}` without its sources."""
        query = RequestFilter(_utc(since), _utc(until), status, tier, limit)
        return {"object": "list", "data": await usecases.requests(provide(), key, query)}

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JSONResponse:
        """Each dependency's state; 200 when all are ok, else 503."""
        states = dict(await health()) if health is not None else await _ping_all(provide)
        ok = all(v == "ok" for v in states.values())
        return JSONResponse({"ok": ok, "checks": states}, 200 if ok else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="ragbus gateway",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )

    # Each one added wraps the ones before: metrics (outermost) see every answer, 413s and CORS
    # preflights included, and a 413 carries the CORS headers a browser needs to read it.
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
            expose_headers=["Retry-After"],
        )
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    return app


async def _document_body(request: Request) -> usecases.Submission:
    """The document a `POST /v1/documents` carries: a file and its fields (multipart), or JSON."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        # The body limit (_BodyLimit) applies while the parser reads, file parts included.
        async with request.form(max_files=1, max_fields=len(domain.UPLOAD_FIELDS) + 100) as form:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise GatewayError(400, "a multipart upload needs its file in the field `file`", param="file")
            fields = [(k, v) for k, v in form.multi_items() if k != "file" and isinstance(v, str)]
            if any(k != "file" and not isinstance(v, str) for k, v in form.multi_items()):
                raise GatewayError(400, "one file per upload, in the field `file`", param="file")
            given = domain.upload_fields(fields, file.filename, file.content_type)
            content = await file.read()
        return _valid(domain.DocumentUpload, {**given, "content": content})
    return _valid(domain.DocumentRequest, await request.body(), json=True)


def _valid(model: type[M], data: Any, *, json: bool = False) -> M:
    """`data` as `model`, or the 400 FastAPI answers for a body that is not valid."""
    try:
        return model.model_validate_json(data) if json else model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError(errors) from None


# `POST /v1/documents` takes either body: described here, as the handler reads the request itself.
_DOCUMENT_BODIES: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": domain.DocumentRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "the document's file"},
                        "doc_id": {"type": "string", "description": "its id (the same again replaces it)"},
                        "title": {"type": "string"},
                        "content_type": {
                            "type": "string",
                            "description": "its MIME type; default: the file part's, else by the file name",
                        },
                        "metadata": {"type": "string", "description": "a JSON object"},
                        "groups": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "who may read it (repeated, or comma-separated)",
                        },
                        "chunking": {"type": "string", "enum": ["tokens", "headings", "sentences"]},
                        "wait": {"type": "boolean", "description": "answer once it is indexed (201)"},
                    },
                }
            },
        },
    }
}


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _outcome(exc: GatewayError) -> str:
    if exc.code == "content_policy_violation" or exc.status == 429:
        return "blocked"
    return "failed" if exc.code == "answer_failed" else "error"


async def _ping_all(provide: DepsProvider) -> dict[str, str]:
    try:
        deps = provide()
    except DependencyUnavailable as exc:
        return {"dependencies": f"error: {exc}"}
    states = {}
    for name, client in (("kafka", deps.answerer), ("database", deps.keys)):
        try:
            await client.ping()
            states[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            states[name] = f"error: {exc!r}"
    return states
