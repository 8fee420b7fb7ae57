"""Disk cache of parsed judge replies (SQLite in the user cache dir).

Keyed by everything that can change a reply: backend, model, prompt template hash, rubric version,
question, answer, order and sampling parameters. Only successful, parsed replies are stored, so a
timeout or an unparseable reply is retried next time instead of being remembered.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from tutor.models import JudgeReply
from tutor.paths import cache_dir


def cache_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "judge.sqlite"
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(
            "CREATE TABLE IF NOT EXISTS judge_reply (key TEXT PRIMARY KEY, reply TEXT NOT NULL, "
            "prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)"
        )
        return con

    def get(self, key: str) -> tuple[JudgeReply, int, int] | None:
        try:
            with self._lock:
                con = self._connect()
                try:
                    row = con.execute(
                        "SELECT reply, prompt_tokens, completion_tokens FROM judge_reply WHERE key=?", (key,)
                    ).fetchone()
                finally:
                    con.close()
        except sqlite3.Error:
            return None  # an unusable cache only costs time
        if row is None:
            return None
        try:
            return JudgeReply.model_validate_json(row[0]), int(row[1] or 0), int(row[2] or 0)
        except ValueError:
            return None

    def put(self, key: str, reply: JudgeReply, prompt_tokens: int, completion_tokens: int) -> None:
        try:
            with self._lock:
                con = self._connect()
                try:
                    with con:
                        con.execute(
                            "INSERT OR REPLACE INTO judge_reply VALUES (?, ?, ?, ?, ?)",
                            (key, reply.model_dump_json(), prompt_tokens, completion_tokens, time.time()),
                        )
                finally:
                    con.close()
        except sqlite3.Error:
            pass  # read-only or full disk: grading still works, it just is not remembered
