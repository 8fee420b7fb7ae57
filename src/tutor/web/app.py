"""The web app: study pages rendered on the server, a JSON API beside them, on the CLI's library.

Routes parse the request, call the library (question bank, grader, judge, store, scheduling) and render;
grading and storage live in ``tutor.study`` / ``tutor.store`` / ``tutor.schedule`` exactly as for
``tutor study``. One answer goes through the same steps as in the terminal:

1. the answer is committed as an ungraded attempt (``Store.save_answer``);
2. it is graded (``study.grade_attempt``: grade, then grade + next card committed together);
3. only then does the browser get the feedback page (a redirect to ``/attempts/{id}``).

With a judge, step 2 records the embedding grade and the judge runs in the background
(``jobs.JudgeJobs``); its grade replaces the embedding grade when it arrives (``Store.replace_grade``)
and the feedback page, polling, swaps it in.

Handlers that touch the model or the database are plain ``def`` functions: FastAPI runs them on a thread
pool, so grading never blocks the event loop and a slow judged grade does not stall other requests.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from tutor.judge.base import Judge
from tutor.models import Grade, Question
from tutor.rubric import QuestionBank, UnknownQuestion, default_bank
from tutor.schedule import Clock, next_due, plan_session, review_forecast, utc_now
from tutor.store import Attempt, Store, default_db_path
from tutor.study import GradeFn, default_grade_fn, grade_attempt, progress_report, question_statuses
from tutor.text import MAX_ANSWER_CHARS  # what the grader reads of an answer; the rest is saved, not graded
from tutor.web import views
from tutor.web.csrf import COOKIE, FIELD, Csrf, load_or_create_secret
from tutor.web.jobs import JudgeJobs, Stores, judged_grade_fn

log = logging.getLogger("tutor.web")

HERE = Path(__file__).resolve().parent
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# A guard against absurd posts, not the grading limit: like the CLI, an answer over 5,000 characters is
# saved whole and graded on its first 5,000 (flagged `truncated`).
MAX_POST_CHARS = 100_000
MAX_COMMENT_CHARS = 5_000
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class CsrfRefused(Exception):
    pass


class TooLong(Exception):
    def __init__(self, what: str, limit: int):
        super().__init__(f"{what} is over {limit:,} characters")
        self.what, self.limit = what, limit


@dataclass
class WebState:
    bank: QuestionBank
    stores: Stores
    csrf: Csrf
    grade_fn: GradeFn
    judged_fn: GradeFn | None
    jobs: JudgeJobs | None
    judge_label: str | None
    clock: Clock
    env: Environment
    grade_lock: threading.Lock


def create_app(
    *,
    bank: QuestionBank | None = None,
    db_path: Path | None = None,
    grade_fn: GradeFn | None = None,
    judge: Judge | None = None,
    allowed_hosts: Sequence[str] | None = LOOPBACK_HOSTS,
    clock: Clock = utc_now,
    warm: bool = True,
) -> FastAPI:
    """The ASGI app. ``warm``: load the grading model and embed every rubric at startup (``tutor web``
    does it before building the app, so a bad calibration is an error before serving; tests skip it). ``allowed_hosts``: the Host names accepted (a page
    served on 127.0.0.1 must not answer a DNS-rebinding site's requests); None accepts any."""
    bank = bank or default_bank()
    db_path = db_path or default_db_path()
    Store(db_path, clock=clock).close()  # open (and migrate) it now: an unusable file fails at startup
    stores = Stores(db_path, clock)
    judged = judged_grade_fn(judge) if judge is not None else None
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,  # learner text is data: every value is HTML-escaped unless marked safe
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    state = WebState(
        bank=bank,
        stores=stores,
        csrf=Csrf(load_or_create_secret(db_path.parent)),
        grade_fn=grade_fn or default_grade_fn(),
        judged_fn=judged,
        jobs=JudgeJobs(judged, bank, stores) if judged is not None else None,
        judge_label=judge.spec if judge is not None else None,
        clock=clock,
        env=env,
        grade_lock=threading.Lock(),
    )
    env.globals.update(
        when=lambda t: views.when(t, state.clock()),
        stamp=views.stamp,
        judge_label=state.judge_label,
        MAX_ANSWER_CHARS=MAX_ANSWER_CHARS,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm:
            await run_in_threadpool(warm_grader, bank.questions)
        yield
        if state.jobs is not None:
            state.jobs.shutdown()
        state.stores.close_all()

    app = FastAPIOffline(
        title="tutor",
        version="0.1.0",
        description="Free-response study of LLM training topics. The JSON API returns the same objects as "
        "the CLI's `--json` output.",
        lifespan=lifespan,
        redoc_url=None,
        static_url="/static/docs",
    )
    app.state.tutor = state
    app.mount("/static/app", StaticFiles(directory=HERE / "static"), name="static")
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    _install_middleware(app, state)
    _install_error_handlers(app, state)
    _add_pages(app, state)
    _add_api(app, state)
    return app


def warm_grader(questions: Sequence[Question]) -> None:
    """Load the model and embed every rubric once, before the first learner waits for a grade."""
    from tutor.grader import get_grader

    grader = get_grader()
    for q in questions:
        grader.grade(q, "warm up")


# ---------------------------------------------------------------------------------------------- plumbing


def _install_middleware(app: FastAPI, state: WebState) -> None:
    @app.middleware("http")
    async def browser_id_and_headers(request: Request, call_next: Any) -> Response:
        # Every browser gets an id cookie the forms' CSRF tokens are bound to (see csrf.py).
        bid = request.cookies.get(COOKIE)
        fresh = not bid or len(bid) > 64
        request.state.browser_id = Csrf.new_id() if fresh else bid
        response: Response = await call_next(request)
        if fresh and not request.url.path.startswith("/api/"):
            response.set_cookie(
                COOKIE, request.state.browser_id, max_age=400 * 86400, httponly=True, samesite="strict"
            )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if response.headers.get("content-type", "").startswith(
            "text/html"
        ) and not request.url.path.startswith("/docs"):
            response.headers["Content-Security-Policy"] = CSP
        return response


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _install_error_handlers(app: FastAPI, state: WebState) -> None:
    # No stack trace ever reaches the browser: pages get an error page, the API a JSON `detail`, and the
    # server log gets the traceback.

    def error(request: Request, status: int, title: str, message: str, **extra: Any) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": message}, status_code=status)
        return render(request, "error.html", status=status, title=title, message=message, **extra)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error(request, 404, "Not found", str(exc.detail) if exc.detail != "Not Found" else "")
        if exc.status_code == 405:
            return error(request, 405, "Not allowed", "That page cannot be used this way.")
        return error(request, exc.status_code, "Error", str(exc.detail))

    @app.exception_handler(UnknownQuestion)
    async def unknown_question(request: Request, exc: UnknownQuestion) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return render(
            request,
            "error.html",
            status=404,
            title="No such question",
            message=f"There is no question {exc.qid!r}.",
            suggestions=exc.suggestions,
            link=("/progress", "All questions"),
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        if _is_api(request):
            return await request_validation_exception_handler(request, exc)
        return error(request, 400, "Bad request", "The form was incomplete or malformed. Go back and retry.")

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return error(
            request,
            403,
            "Form refused",
            "This form was not accepted: it did not come from a page of this tutor (cross-site request "
            "protection), or the page is too old. Go back, reload the page and submit again. A draft "
            "answer is kept in this browser.",
        )

    @app.exception_handler(TooLong)
    async def too_long(request: Request, exc: TooLong) -> Response:
        return error(request, 413, "Too long", f"{exc}. Shorten it and submit again.")

    @app.exception_handler(sqlite3.Error)
    async def database_error(request: Request, exc: sqlite3.Error) -> Response:
        log.error("progress database error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(
            request,
            503,
            "Progress could not be saved",
            f"The progress database could not be used ({type(exc).__name__}). Answers saved before this "
            "point are kept; try again in a moment.",
        )

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(
            request,
            500,
            "Something went wrong",
            "Something went wrong on the server (the details are in its log). Anything already saved is "
            "kept.",
        )


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    state: WebState = request.app.state.tutor
    html = state.env.get_template(template).render(
        request_path=request.url.path,
        csrf_token=state.csrf.token(request.state.browser_id),
        csrf_field=FIELD,
        **ctx,
    )
    return HTMLResponse(html, status_code=status)


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


async def require_csrf(request: Request) -> None:
    state: WebState = request.app.state.tutor
    form = await request.form()
    sent = form.get(FIELD)
    if not state.csrf.valid(request, sent if isinstance(sent, str) else None):
        raise CsrfRefused()


def _question(state: WebState, qid: str) -> Question:
    return state.bank.get(qid)  # UnknownQuestion -> the 404 page


def _attempt(store: Store, attempt_id: int) -> Attempt:
    try:
        return store.attempt(attempt_id)
    except KeyError:
        raise StarletteHTTPException(404, f"There is no attempt #{attempt_id}.") from None


def _with_chapter(path: str, chapter: int | None, **more: Any) -> str:
    params = {k: v for k, v in {"chapter": chapter, **more}.items() if v is not None}
    return f"{path}?{urlencode(params)}" if params else path


def _text(value: str, what: str, limit: int) -> str:
    if len(value) > limit:
        raise TooLong(what, limit)
    return value.replace("\r\n", "\n").replace("\r", "\n")


# ---------------------------------------------------------------------------------------------- pages


def _add_pages(app: FastAPI, state: WebState) -> None:
    bank = state.bank

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request, done: int = 0) -> HTMLResponse:
        store = state.stores.get()
        now = state.clock()
        cards = store.cards()
        plan = plan_session(bank.questions, cards, now, len(bank))
        return render(
            request,
            "home.html",
            due=[p for p in plan if p.kind == "review"],
            new=[p for p in plan if p.kind == "new"],
            progress=progress_report(bank, store, now),
            next_due=next_due(cards, now),
            done=bool(done),
        )

    @app.get("/study", include_in_schema=False)
    def study(chapter: int | None = None, after: str | None = None) -> RedirectResponse:
        """The next question of a study round: due reviews first, then new ones (as `tutor study`)."""
        store = state.stores.get()
        plan = plan_session(bank.questions, store.cards(), state.clock(), len(bank), chapter)
        ids = [p.question.id for p in plan]
        rest = ids[ids.index(after) + 1 :] if after in ids else [i for i in ids if i != after]
        if not rest:
            return RedirectResponse(_with_chapter("/", None, done=1), status_code=303)
        return RedirectResponse(_with_chapter(f"/q/{rest[0]}", chapter), status_code=303)

    def question_page(
        request: Request, q: Question, chapter: int | None, hints_shown: int, draft: str, started: str
    ) -> HTMLResponse:
        store = state.stores.get()
        card = store.card(q.id)
        now = state.clock()
        return render(
            request,
            "question.html",
            q=q,
            chapter=chapter,
            hints_shown=hints_shown,
            draft=draft,
            started_at=started,
            card=card,
            due_now=card is not None and card.due <= now,
            attempts=len(store.attempts(q.id)),
            answer_action=_with_chapter(f"/q/{q.id}/answer", chapter),
            hint_action=_with_chapter(f"/q/{q.id}/hint", chapter),
            skip_href=_with_chapter("/study", chapter, after=q.id),
        )

    @app.get("/q/{qid}", response_class=HTMLResponse, include_in_schema=False)
    def question(request: Request, qid: str, chapter: int | None = None) -> HTMLResponse:
        q = _question(state, qid)
        return question_page(request, q, chapter, 0, "", state.clock().isoformat(timespec="seconds"))

    @app.post("/q/{qid}/hint", include_in_schema=False, dependencies=[Depends(require_csrf)])
    def hint(
        request: Request,
        qid: str,
        chapter: int | None = None,
        hints_used: Annotated[int, Form()] = 0,
        answer: Annotated[str, Form()] = "",
        started_at: Annotated[str, Form()] = "",
    ) -> HTMLResponse:
        """The next hint. Hints are counted on the page and saved with the answer, as in `tutor study`."""
        q = _question(state, qid)
        shown = min(max(hints_used, 0) + 1, len(q.hints))
        if _htmx(request):
            hint_action = _with_chapter(f"/q/{q.id}/hint", chapter)
            return render(request, "_hints.html", q=q, hints_shown=shown, hint_action=hint_action)
        # Without JavaScript the whole page comes back, the draft answer with it.
        draft = _text(answer, "The answer", MAX_POST_CHARS)
        return question_page(request, q, chapter, shown, draft, started_at or state.clock().isoformat())

    @app.post("/q/{qid}/answer", include_in_schema=False, dependencies=[Depends(require_csrf)])
    def answer(
        request: Request,
        qid: str,
        chapter: int | None = None,
        answer: Annotated[str, Form()] = "",
        hints_used: Annotated[int, Form()] = 0,
        started_at: Annotated[str, Form()] = "",
    ) -> Response:
        q = _question(state, qid)
        text = _text(answer, "The answer", MAX_POST_CHARS).strip()
        now = state.clock()
        started = _parse_time(started_at, now)
        hints = min(max(hints_used, 0), len(q.hints))
        store = state.stores.get()
        attempt_id = store.save_answer(q.id, text, hints, started, now)  # step 1: nothing typed is lost
        try:
            grade_attempt(store, bank, attempt_id, state.grade_fn, state.clock)  # step 2 (+ commit)
        except Exception:
            log.exception("grading attempt %s failed", attempt_id)
            return _ungraded(request, q, attempt_id)
        if state.jobs is not None:
            state.jobs.submit(attempt_id, q, text)
        return RedirectResponse(
            _with_chapter(f"/attempts/{attempt_id}", chapter, submitted=1), status_code=303
        )

    def _ungraded(request: Request, q: Question, attempt_id: int) -> HTMLResponse:
        return render(
            request,
            "error.html",
            status=500,
            title="Saved, not graded",
            message=f"Your answer to {q.id} was saved (attempt #{attempt_id}), but grading it failed on the "
            "server (the details are in its log). It is kept, ungraded; open it to grade it again.",
            link=(f"/attempts/{attempt_id}", f"Open attempt #{attempt_id}"),
        )

    def feedback_context(attempt_id: int) -> dict[str, Any]:
        store = state.stores.get()
        a = _attempt(store, attempt_id)
        q = bank.by_id.get(a.question_id)
        if q is None:
            raise StarletteHTTPException(404, f"Question {a.question_id} is no longer in the question bank.")
        judge_state = state.jobs.state(attempt_id) if state.jobs is not None else "none"
        return {
            "a": a,
            "q": q,
            "card": store.card(q.id),
            "judge_state": judge_state,
            "judge_lines": views.judge_summary(a.grade.judge) if a.grade and a.grade.judge else [],
            "highlighted": views.highlight(a.answer, a.grade) if a.grade else None,
            "kp_ref": views.key_point_ref,
            "mis_ref": views.misconception_ref,
        }

    @app.get("/attempts/{attempt_id}", response_class=HTMLResponse, include_in_schema=False)
    def attempt_page(
        request: Request, attempt_id: int, chapter: int | None = None, submitted: int = 0
    ) -> HTMLResponse:
        ctx = feedback_context(attempt_id)
        return render(
            request,
            "attempt.html",
            chapter=chapter,
            submitted=bool(submitted),
            next_href=_with_chapter("/study", chapter),
            **ctx,
        )

    @app.get("/attempts/{attempt_id}/feedback", response_class=HTMLResponse, include_in_schema=False)
    def feedback_fragment(request: Request, attempt_id: int) -> HTMLResponse:
        """The feedback section alone: the page polls it while the LLM judge works."""
        return render(request, "_feedback.html", **feedback_context(attempt_id))

    @app.post("/attempts/{attempt_id}/grade", include_in_schema=False, dependencies=[Depends(require_csrf)])
    def grade_saved(request: Request, attempt_id: int) -> Response:
        """Grade an attempt that was saved but never graded (the server stopped, or grading failed)."""
        store = state.stores.get()
        with state.grade_lock:  # two clicks must not record two reviews
            a = _attempt(store, attempt_id)
            if not a.graded:
                try:
                    grade_attempt(store, bank, attempt_id, state.grade_fn, state.clock)
                except Exception:
                    log.exception("grading attempt %s failed", attempt_id)
                    return _ungraded(request, bank.get(a.question_id), attempt_id)
                if state.jobs is not None:
                    state.jobs.submit(attempt_id, bank.get(a.question_id), a.answer)
        return RedirectResponse(f"/attempts/{attempt_id}", status_code=303)

    @app.post("/attempts/{attempt_id}/dispute", include_in_schema=False, dependencies=[Depends(require_csrf)])
    def dispute(request: Request, attempt_id: int, comment: Annotated[str, Form()] = "") -> Response:
        """Flag the grade with the learner's comment, exactly as `!` does in `tutor study`."""
        store = state.stores.get()
        if not _attempt(store, attempt_id).graded:
            raise StarletteHTTPException(409, "This answer has no grade to dispute yet: grade it first.")
        text = _text(comment, "The comment", MAX_COMMENT_CHARS).strip()
        store.flag(attempt_id, text or "(no comment)")
        if _htmx(request):
            return render(request, "_dispute.html", a=store.attempt(attempt_id))
        return RedirectResponse(f"/attempts/{attempt_id}#dispute", status_code=303)

    @app.get("/q/{qid}/history", response_class=HTMLResponse, include_in_schema=False)
    def history(request: Request, qid: str) -> HTMLResponse:
        q = _question(state, qid)
        store = state.stores.get()
        return render(
            request, "history.html", q=q, attempts=list(reversed(store.attempts(q.id))), card=store.card(q.id)
        )

    @app.get("/progress", response_class=HTMLResponse, include_in_schema=False)
    def progress(request: Request) -> HTMLResponse:
        store = state.stores.get()
        now = state.clock()
        rows = progress_report(bank, store, now)
        statuses = question_statuses(bank, store)
        forecast = review_forecast(store.cards().values(), now, days=14)
        top = sorted(
            (m | {"chapter": r["chapter"]} for r in rows for m in r["top_misconceptions"]),
            key=lambda m: (-m["count"], m["question_id"]),
        )[:8]
        return render(
            request,
            "progress.html",
            rows=rows,
            statuses=statuses,
            forecast=forecast,
            forecast_chart=views.forecast_chart(forecast),
            mastery_chart=views.mastery_chart(rows),
            top=top,
            answered=sum(1 for s in statuses if s.attempts),
            attempts=sum(s.attempts for s in statuses),
        )


def _parse_time(value: str, now: datetime) -> datetime:
    """The question page's render time (a hidden field); the submit time if it is missing or odd."""
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return now
    if t.tzinfo is None or t > now:
        return now
    return t


# ---------------------------------------------------------------------------------------------- API


class GradeRequest(BaseModel):
    question_id: str = Field(examples=["ch13-1"])
    answer: str = Field(
        max_length=MAX_POST_CHARS,
        description="Graded like `tutor grade`: over 5,000 characters only the first 5,000 are graded.",
        examples=["bf16 keeps fp32's 8-bit exponent, so it has the same dynamic range."],
    )
    judge: bool = Field(
        False, description="Also grade with the LLM judge this server was started with (`--judge`)."
    )


class QuestionRow(BaseModel):
    id: str
    chapter: int
    chapter_title: str
    question: str


def _add_api(app: FastAPI, state: WebState) -> None:
    bank = state.bank

    @app.get("/api/questions", response_model=list[QuestionRow], tags=["api"], summary="List the questions")
    def api_questions(
        chapter: Annotated[int | None, Query(description="Only this chapter (11-20).")] = None,
    ) -> list[dict[str, Any]]:
        """The question bank, as `tutor questions --json`."""
        if chapter is not None and chapter not in bank.chapters:
            raise StarletteHTTPException(
                404, f"no chapter {chapter}; chapters are {min(bank.chapters)}-{max(bank.chapters)}"
            )
        qs = bank.chapter(chapter) if chapter is not None else bank.questions
        return [
            {"id": q.id, "chapter": q.chapter, "chapter_title": q.chapter_title, "question": q.question}
            for q in qs
        ]

    @app.post(
        "/api/grade",
        tags=["api"],
        summary="Grade one answer",
        responses={200: {"model": Grade, "description": "The `tutor grade --json` object."}},
    )
    def api_grade(body: GradeRequest) -> Response:
        """Grade one answer, as `tutor grade QUESTION_ID ANSWER --json`. Nothing is saved."""
        q = bank.get(body.question_id)
        if body.judge and state.judged_fn is None:
            raise StarletteHTTPException(400, "this server was started without --judge")
        fn = state.judged_fn if body.judge and state.judged_fn is not None else state.grade_fn
        g = fn(q, body.answer)
        return Response(g.model_dump_json(indent=2), media_type="application/json")

    @app.get("/api/progress", tags=["api"], summary="Progress per chapter")
    def api_progress() -> list[dict[str, Any]]:
        """Per chapter: questions seen, mastery levels, reviews due, top misconceptions (`tutor progress
        --json`)."""
        return progress_report(bank, state.stores.get(), state.clock())
