"""Progress database: migrations, attempt storage, FSRS cards, corrupt files, concurrent sessions."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fsrs import State

from tutor import store as store_mod
from tutor.models import CoveredPoint, FoundMisconception, Grade, JudgeReport, MissedPoint
from tutor.store import MIGRATIONS, Store, StoreError, default_db_path

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def make_grade(qid: str = "ch11-1", verdict: str = "partial", score: float = 0.5, **kw) -> Grade:
    return Grade(
        question_id=qid,
        score=score,
        verdict=verdict,  # type: ignore[arg-type]
        covered=[CoveredPoint(id="kp1", text="A point.", sentence="I said a point.", similarity=0.8)],
        missed=[MissedPoint(id="kp2", text="Another point.")],
        misconceptions=[
            FoundMisconception(
                id="mis1", statement="Wrong.", correction="Right.", sentence="I was wrong.", similarity=0.7
            )
        ],
        feedback="Partly right. Missing: another point.",
        grader="test",
        **kw,
    )


def test_default_path_is_under_tutor_home(tutor_home: Path) -> None:
    assert default_db_path() == tutor_home / "progress.sqlite"
    with Store() as s:
        assert s.path.exists()
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_apply_once_in_order(tutor_home: Path) -> None:
    names = [fn.__name__ for fn in MIGRATIONS]
    assert names == sorted(names) and names[0] == "m001_initial"
    with Store() as s:
        assert s.applied_migrations() == names
    with Store() as s:  # reopening runs nothing twice
        assert s.applied_migrations() == names
        assert s.db.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(names)


def test_old_database_is_upgraded(tutor_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS[:1])
    with Store() as s:
        s.save_answer("ch11-1", "kept across the upgrade", 0, T0)
        assert s.applied_migrations() == ["m001_initial"]
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS)
    with Store() as s:
        assert s.applied_migrations() == [fn.__name__ for fn in MIGRATIONS]
        assert [a.answer for a in s.attempts()] == ["kept across the upgrade"]


def test_attempt_round_trip_and_card(tutor_home: Path) -> None:
    with Store(clock=lambda: T0) as s:
        aid = s.save_answer("ch11-1", "my answer\nsecond line", 2, T0 - timedelta(minutes=3), T0)
        pending = s.attempt(aid)
        assert pending.answer == "my answer\nsecond line" and not pending.graded and s.card("ch11-1") is None
        judge = JudgeReport(
            judge="fake",
            backend="fake",
            model="x",
            consistent=False,
            embedding_score=0.5,
            embedding_verdict="partial",
            judge_weight=0.5,
            rule="inconsistent",
        )
        card = s.record_grade(aid, make_grade(judge=judge), rubric_version="v1")
        a = s.attempt(aid)
        assert (a.verdict, a.score, a.hints_used, a.rubric_version, a.rating) == ("partial", 0.5, 2, "v1", 2)
        assert a.started_at == "2025-03-01T08:57:00+00:00" and a.submitted_at == "2025-03-01T09:00:00+00:00"
        assert a.grade is not None and a.grade.feedback.startswith("Partly right")
        assert a.grade.misconceptions[0].correction == "Right."
        assert a.judge == judge.model_dump(mode="json")
        # partial -> Hard: still learning, due again in 15 minutes
        assert card.state == State.Learning and card.due == T0 + timedelta(minutes=15)
        assert s.card("ch11-1") == card and s.review_count("ch11-1") == 1
        assert s.verdicts() == {"ch11-1": ["partial"]}


def test_replace_grade_reschedules_as_if_the_new_grade_came_first(tutor_home: Path) -> None:
    # Two questions answered at the same time: one graded partial then replaced by correct, the other
    # recorded correct directly. The replaced card must equal the direct one (one review, not two).
    with Store(clock=lambda: T0) as s:
        a = s.save_answer("ch11-1", "first", 0, T0)
        s.record_grade(a, make_grade("ch11-1", "partial", 0.5), "v1", T0)
        b = s.save_answer("ch11-2", "second", 0, T0)
        direct = s.record_grade(b, make_grade("ch11-2", "correct", 0.8), "v1", T0)
        judged = make_grade("ch11-1", "correct", 0.8).model_copy(update={"grader": "judged"})
        replaced = s.replace_grade(a, judged)
        assert replaced is not None and s.card("ch11-1") == replaced
        assert (replaced.state, replaced.due, replaced.stability) == (
            direct.state,
            direct.due,
            direct.stability,
        )
        assert s.review_count("ch11-1") == 1
        got = s.attempt(a)
        assert (got.verdict, got.score, got.grader, got.rating, got.rubric_version) == (
            "correct",
            0.8,
            "judged",
            3,
            "v1",
        )
        assert s.verdicts() == {"ch11-1": ["correct"], "ch11-2": ["correct"]}


def test_replace_grade_after_a_later_review_leaves_the_card(tutor_home: Path) -> None:
    with Store(clock=lambda: T0) as s:
        first = s.save_answer("ch11-1", "one", 0, T0)
        s.record_grade(first, make_grade("ch11-1", "incorrect", 0.1), now=T0)
        second = s.save_answer("ch11-1", "two", 0, T0 + timedelta(hours=1))
        card = s.record_grade(second, make_grade("ch11-1", "correct", 0.8), now=T0 + timedelta(hours=1))
        assert s.replace_grade(first, make_grade("ch11-1", "partial", 0.5)) is None
        assert s.card("ch11-1") == card and s.attempt(first).verdict == "partial"
        ungraded = s.save_answer("ch11-2", "three", 0, T0)
        with pytest.raises(ValueError, match="no grade to replace"):
            s.replace_grade(ungraded, make_grade("ch11-2"))
        with pytest.raises(KeyError):
            s.replace_grade(999, make_grade())


def test_a_second_store_in_one_process_keeps_the_first_ones_locks(tutor_home: Path) -> None:
    # The web app holds one Store per thread. Opening another must not read the file with plain I/O:
    # closing that descriptor would drop this process's SQLite locks, and a CLI session closing meanwhile
    # would take itself for the last connection and delete the WAL under the web app.
    path = tutor_home / "progress.sqlite"
    first = Store(path)
    first.save_answer("ch11-1", "first", 0, T0)
    second = Store(path)
    assert store_mod._open_here[first._key] == 2  # both count, under the key close() releases
    other = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        'c.execute("INSERT INTO attempts (question_id, answer, started_at, submitted_at) '
        "VALUES ('ch11-2', 'from the CLI', 'x', 'x')\"); c.commit(); c.close()"
    )
    subprocess.run([sys.executable, "-c", other, str(path)], check=True)
    assert (tutor_home / "progress.sqlite-wal").exists()  # this process's connections still count
    second.save_answer("ch11-3", "second", 0, T0)
    assert [a.answer for a in first.attempts()] == ["first", "from the CLI", "second"]
    first.close()
    second.close()
    second.close()  # closing twice is harmless
    # Only this file's count: stores other tests left open in this process are theirs.
    assert first._key not in store_mod._open_here


def test_flag(tutor_home: Path) -> None:
    with Store(clock=lambda: T0) as s:
        aid = s.save_answer("ch12-1", "answer", 0, T0)
        s.record_grade(aid, make_grade("ch12-1", "incorrect", 0.2))
        s.flag(aid, "I did say that")
        [f] = s.flagged()
        assert (f.id, f.flagged, f.flag_comment) == (aid, True, "I did say that")
        with pytest.raises(KeyError):
            s.flag(999, "no such attempt")


def test_corrupt_file_is_reported_and_left_untouched(tutor_home: Path) -> None:
    path = tutor_home / "progress.sqlite"
    junk = b"this is not a database\n" * 100
    path.write_bytes(junk)
    with pytest.raises(StoreError) as e:
        Store()
    msg = str(e.value)
    assert str(path) in msg and "mv " in msg and "left untouched" in msg
    assert path.read_bytes() == junk


def test_damaged_database_is_reported_and_left_untouched(tutor_home: Path) -> None:
    path = tutor_home / "progress.sqlite"
    with Store() as s:
        for i in range(200):
            s.save_answer("ch11-1", f"answer {i} " * 50, 0, T0)
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(path.read_bytes())
    data[4096 * 2 : 4096 * 6] = b"\xff" * (4096 * 4)  # keep the header, smash some pages
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as e:
        Store()
    assert str(path) in str(e.value)
    assert path.read_bytes() == bytes(data)


def test_cli_reports_corrupt_database(tutor_home: Path) -> None:
    from typer.testing import CliRunner

    from tutor.cli import app

    (tutor_home / "progress.sqlite").write_bytes(b"garbage" * 10)
    r = CliRunner().invoke(app, ["progress"])
    assert r.exit_code == 2
    assert "progress.sqlite" in r.output and "Traceback" not in r.output


def _writer(path: str, tag: str, n: int) -> None:
    from tutor.store import Store

    with Store(Path(path)) as s:
        for i in range(n):
            aid = s.save_answer("ch11-1", f"{tag}-{i}", 0, T0)
            s.record_grade(aid, make_grade(verdict="correct", score=0.8))


def test_two_sessions_at_once_lose_nothing(tutor_home: Path) -> None:
    path = tutor_home / "progress.sqlite"
    Store(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), tag, 30)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store(path) as s:
        answers = {a.answer for a in s.attempts()}
        assert answers == {f"{t}-{i}" for t in "ab" for i in range(30)}
        assert all(a.graded for a in s.attempts())
        assert s.review_count("ch11-1") == 60  # every card update saw the previous one
