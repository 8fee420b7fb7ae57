"""The learner's progress: attempts and FSRS cards in SQLite (``tutor_home()/progress.sqlite``).

- The schema is built and upgraded by numbered migrations (``m001_...``), applied in order and recorded
  in ``_migrations``; a migration never runs twice, and two processes starting at once do not race
  (migrations run inside one ``BEGIN IMMEDIATE`` transaction).
- WAL mode with a busy timeout: two study sessions on one database serialise their writes instead of
  failing, and every write is a short transaction that re-reads the card it updates, so nothing is lost.
- An answer is committed the moment it is submitted (``save_answer``), before grading; the grade and
  the new card are committed together (``record_grade``) before any feedback is shown. A grade that
  arrives later (the LLM judge's, in ``tutor web``) replaces it with ``replace_grade``.
- A file that is not a readable SQLite database is reported (``StoreError``) and left untouched.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fsrs import Card

from tutor.models import Grade
from tutor.paths import tutor_home
from tutor.schedule import Clock, make_scheduler, rating_for, review, utc_now

DB_NAME = "progress.sqlite"
SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(Exception):
    """The progress database cannot be used; the message names the file and how to recover."""


def default_db_path() -> Path:
    return tutor_home() / DB_NAME


# ---------------------------------------------------------------------------------------------- migrations

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            question_id TEXT NOT NULL,
            answer TEXT NOT NULL,
            hints_used INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            submitted_at TEXT NOT NULL,
            graded_at TEXT,
            score REAL,
            verdict TEXT,
            grader TEXT,
            grade_json TEXT,
            judge_json TEXT,
            rubric_version TEXT,
            rating INTEGER,
            flagged INTEGER NOT NULL DEFAULT 0,
            flag_comment TEXT,
            flagged_at TEXT
        )
        """
    )
    db.execute("CREATE INDEX attempts_question ON attempts (question_id, id)")
    db.execute(
        """
        CREATE TABLE cards (
            question_id TEXT PRIMARY KEY,
            card_json TEXT NOT NULL,
            state INTEGER NOT NULL,
            stability REAL,
            difficulty REAL,
            due TEXT NOT NULL,
            last_review TEXT,
            reviews INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        )
        """
    )


@migration
def m002_flag_index(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX attempts_flagged ON attempts (flagged) WHERE flagged = 1")


@migration
def m003_card_before(db: sqlite3.Connection) -> None:
    # The question's card as it was before this attempt's review ('' = first review; NULL = graded before
    # this column existed). `replace_grade` reviews again from it when a judged grade replaces a recorded one.
    db.execute("ALTER TABLE attempts ADD COLUMN card_before_json TEXT")


# ---------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Attempt:
    id: int
    question_id: str
    answer: str
    hints_used: int
    started_at: str
    submitted_at: str
    graded_at: str | None
    score: float | None
    verdict: str | None
    grader: str | None
    grade: Grade | None
    judge: dict | None
    rubric_version: str | None
    rating: int | None
    flagged: bool
    flag_comment: str | None
    flagged_at: str | None

    @property
    def graded(self) -> bool:
        return self.verdict is not None


def _attempt(row: sqlite3.Row) -> Attempt:
    return Attempt(
        id=row["id"],
        question_id=row["question_id"],
        answer=row["answer"],
        hints_used=row["hints_used"],
        started_at=row["started_at"],
        submitted_at=row["submitted_at"],
        graded_at=row["graded_at"],
        score=row["score"],
        verdict=row["verdict"],
        grader=row["grader"],
        grade=Grade.model_validate_json(row["grade_json"]) if row["grade_json"] else None,
        judge=json.loads(row["judge_json"]) if row["judge_json"] else None,
        rubric_version=row["rubric_version"],
        rating=row["rating"],
        flagged=bool(row["flagged"]),
        flag_comment=row["flag_comment"],
        flagged_at=row["flagged_at"],
    )


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------- store


# Databases this process has open, with how many Stores hold each. While one is open here, its file must
# not be opened with plain file I/O: closing that file descriptor drops every POSIX lock this process holds
# on the file, SQLite's included, and another process would then take itself for the last connection and
# delete the WAL under this one's feet (https://sqlite.org/howtocorrupt.html, section 2.2).
_open_here: Counter[Path] = Counter()
_open_lock = threading.Lock()


class Store:
    def __init__(self, path: Path | None = None, clock: Clock = utc_now, timeout: float = 30.0):
        self.path = path or default_db_path()
        self.clock = clock
        self._key = self.path.resolve()
        with _open_lock:
            if not _open_here[self._key]:  # already checked by the Store holding it open
                self._check_file()
            _open_here[self._key] += 1
        try:
            self._connect(timeout)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        with _open_lock:
            _open_here[self._key] -= 1
            if _open_here[self._key] <= 0:
                del _open_here[self._key]

    def _connect(self, timeout: float) -> None:
        try:
            # Autocommit mode: every write below opens its own explicit transaction.
            self.db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = FULL")
            ok = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {ok}")
            self._migrate()
        except sqlite3.DatabaseError as e:
            if hasattr(self, "db"):
                self.db.close()
            raise self._unusable(str(e)) from None

    # -- opening

    def _unusable(self, why: str) -> StoreError:
        return StoreError(
            f"{self.path}: the progress database cannot be read ({why}). It has been left untouched. "
            f"To start with fresh progress, move it aside (mv '{self.path}' '{self.path}.broken') "
            "or point TUTOR_HOME at another directory; to keep it, restore it from a backup."
        )

    def _check_file(self) -> None:
        p = self.path
        if p.exists():
            if not p.is_file():
                raise StoreError(
                    f"{p}: expected the progress database file, found a directory or device. "
                    "Move it aside or set TUTOR_HOME to another directory."
                )
            try:
                with p.open("rb") as f:
                    head = f.read(16)
            except OSError as e:
                raise StoreError(
                    f"{p}: cannot read the progress database ({e.strerror}). "
                    "Fix its permissions or set TUTOR_HOME to another directory."
                ) from None
            # An empty file is a valid empty database to SQLite; anything else must carry the header.
            if head and head != SQLITE_HEADER:
                raise self._unusable("not an SQLite database")
        else:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(
                    f"{p.parent}: cannot create the data directory ({e.strerror}). "
                    "Set TUTOR_HOME to a writable directory."
                ) from None

    def _migrate(self) -> None:
        db = self.db
        db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {r[0] for r in db.execute("SELECT name FROM _migrations")}
        if all(fn.__name__ in done for fn in MIGRATIONS):
            return
        with self._tx() as tx:
            done = {r[0] for r in tx.execute("SELECT name FROM _migrations")}  # re-read under the lock
            for fn in MIGRATIONS:
                if fn.__name__ not in done:
                    fn(tx)
                    tx.execute(
                        "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                        (fn.__name__, _iso(self.clock())),
                    )

    def applied_migrations(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM _migrations ORDER BY rowid")]

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so a read-modify-write (a card update) cannot interleave
        # with another session's.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def close(self) -> None:
        if not getattr(self, "_closed", False):
            self._closed = True
            self.db.close()
            self._release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing

    def save_answer(
        self,
        question_id: str,
        answer: str,
        hints_used: int,
        started_at: datetime,
        submitted_at: datetime | None = None,
    ) -> int:
        """Commit a submitted answer (ungraded) and return its attempt id."""
        with self._tx() as tx:
            cur = tx.execute(
                "INSERT INTO attempts (question_id, answer, hints_used, started_at, submitted_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (question_id, answer, hints_used, _iso(started_at), _iso(submitted_at or self.clock())),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def record_grade(
        self, attempt_id: int, grade: Grade, rubric_version: str | None = None, now: datetime | None = None
    ) -> Card:
        """Store the grade and advance the question's FSRS card, in one transaction. Returns the new card."""
        now = now or self.clock()
        with self._tx() as tx:
            row = tx.execute(
                "SELECT question_id, hints_used FROM attempts WHERE id = ?", (attempt_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no attempt {attempt_id}")
            qid, hints = row["question_id"], row["hints_used"]
            rating = rating_for(grade.verdict, grade.score, hints)
            prev = tx.execute("SELECT card_json FROM cards WHERE question_id = ?", (qid,)).fetchone()
            card = review(Card.from_json(prev[0]) if prev else None, qid, rating, now, make_scheduler())
            tx.execute(
                "UPDATE attempts SET graded_at = ?, score = ?, verdict = ?, grader = ?, grade_json = ?, "
                "judge_json = ?, rubric_version = ?, rating = ?, card_before_json = ? WHERE id = ?",
                (
                    _iso(now),
                    grade.score,
                    grade.verdict,
                    grade.grader,
                    grade.model_dump_json(),
                    grade.judge.model_dump_json() if grade.judge is not None else None,
                    rubric_version,
                    int(rating),
                    prev[0] if prev else "",
                    attempt_id,
                ),
            )
            tx.execute(
                "INSERT INTO cards (question_id, card_json, state, stability, difficulty, due, last_review, "
                "reviews, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?) "
                "ON CONFLICT (question_id) DO UPDATE SET card_json = excluded.card_json, "
                "state = excluded.state, stability = excluded.stability, difficulty = excluded.difficulty, "
                "due = excluded.due, "
                "last_review = excluded.last_review, reviews = reviews + 1, updated_at = excluded.updated_at",
                (
                    qid,
                    card.to_json(),
                    int(card.state),
                    card.stability,
                    card.difficulty,
                    card.due.isoformat(),
                    card.last_review.isoformat() if card.last_review else None,
                    _iso(now),
                ),
            )
        return card

    def replace_grade(self, attempt_id: int, grade: Grade, rubric_version: str | None = None) -> Card | None:
        """Replace an attempt's recorded grade (the LLM judge's grade arriving after the embedding grade was
        recorded and shown), in one transaction.

        The card is reviewed again from its state before this attempt, at the attempt's original review
        time, so the schedule is what recording the new grade in the first place would have given: the
        question is not reviewed twice. If a later attempt at the question has been graded since (or the
        attempt was graded before the card state was kept), the schedule has moved on and only the
        attempt's grade changes. Returns the new card, or None when the card was left alone.
        """
        with self._tx() as tx:
            row = tx.execute(
                "SELECT question_id, hints_used, graded_at, card_before_json FROM attempts WHERE id = ?",
                (attempt_id,),
            ).fetchone()
            if row is None:
                raise KeyError(f"no attempt {attempt_id}")
            if row["graded_at"] is None:
                raise ValueError(f"attempt {attempt_id} has no grade to replace (record_grade grades it)")
            qid, before = row["question_id"], row["card_before_json"]
            rating = rating_for(grade.verdict, grade.score, row["hints_used"])
            tx.execute(
                "UPDATE attempts SET score = ?, verdict = ?, grader = ?, grade_json = ?, judge_json = ?, "
                "rubric_version = COALESCE(?, rubric_version), rating = ? WHERE id = ?",
                (
                    grade.score,
                    grade.verdict,
                    grade.grader,
                    grade.model_dump_json(),
                    grade.judge.model_dump_json() if grade.judge is not None else None,
                    rubric_version,
                    int(rating),
                    attempt_id,
                ),
            )
            later = tx.execute(
                "SELECT 1 FROM attempts WHERE question_id = ? AND id > ? AND graded_at IS NOT NULL LIMIT 1",
                (qid, attempt_id),
            ).fetchone()
            if later is not None or before is None:
                return None
            reviewed_at = datetime.fromisoformat(row["graded_at"])
            card = review(
                Card.from_json(before) if before else None, qid, rating, reviewed_at, make_scheduler()
            )
            tx.execute(  # `reviews` stays: it is still one review
                "UPDATE cards SET card_json = ?, state = ?, stability = ?, difficulty = ?, due = ?, "
                "last_review = ?, updated_at = ? WHERE question_id = ?",
                (
                    card.to_json(),
                    int(card.state),
                    card.stability,
                    card.difficulty,
                    card.due.isoformat(),
                    card.last_review.isoformat() if card.last_review else None,
                    _iso(self.clock()),
                    qid,
                ),
            )
        return card

    def flag(self, attempt_id: int, comment: str) -> None:
        """The learner disputes a grade; the comment is their claim."""
        with self._tx() as tx:
            cur = tx.execute(
                "UPDATE attempts SET flagged = 1, flag_comment = ?, flagged_at = ? WHERE id = ?",
                (comment, _iso(self.clock()), attempt_id),
            )
            if cur.rowcount != 1:
                raise KeyError(f"no attempt {attempt_id}")

    # -- reading

    def attempt(self, attempt_id: int) -> Attempt:
        row = self.db.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        if row is None:
            raise KeyError(f"no attempt {attempt_id}")
        return _attempt(row)

    def attempts(self, question_id: str | None = None) -> list[Attempt]:
        """Attempts, oldest first (all questions, or one)."""
        if question_id is None:
            rows = self.db.execute("SELECT * FROM attempts ORDER BY id").fetchall()
        else:
            rows = self.db.execute(
                "SELECT * FROM attempts WHERE question_id = ? ORDER BY id", (question_id,)
            ).fetchall()
        return [_attempt(r) for r in rows]

    def flagged(self) -> list[Attempt]:
        rows = self.db.execute("SELECT * FROM attempts WHERE flagged = 1 ORDER BY id").fetchall()
        return [_attempt(r) for r in rows]

    def card(self, question_id: str) -> Card | None:
        row = self.db.execute("SELECT card_json FROM cards WHERE question_id = ?", (question_id,)).fetchone()
        return Card.from_json(row[0]) if row else None

    def cards(self) -> dict[str, Card]:
        return {
            r[0]: Card.from_json(r[1]) for r in self.db.execute("SELECT question_id, card_json FROM cards")
        }

    def review_count(self, question_id: str) -> int:
        row = self.db.execute("SELECT reviews FROM cards WHERE question_id = ?", (question_id,)).fetchone()
        return int(row[0]) if row else 0

    def verdicts(self) -> dict[str, list[str]]:
        """Graded verdicts per question, newest first."""
        out: dict[str, list[str]] = {}
        for qid, v in self.db.execute(
            "SELECT question_id, verdict FROM attempts WHERE verdict IS NOT NULL ORDER BY id DESC"
        ):
            out.setdefault(qid, []).append(v)
        return out


def open_store(path: Path | None = None, clock: Clock = utc_now) -> Store:
    return Store(path, clock=clock)
