"""Named points where tests kill the process (`RAG_FAULT_KILL_AT=embedding|chroma|switch`),
so that "kill -9 in the middle of an ingest" happens at a known step, not by timing luck.
Unset (always, outside tests) it does nothing."""

from __future__ import annotations

import os
import signal

POINTS = ("embedding", "chroma", "switch")


def point(name: str) -> None:
    if os.environ.get("RAG_FAULT_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
