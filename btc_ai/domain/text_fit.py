"""Text fitted into the length limit of where it is stored: MLflow cuts a tag value (a run's description
included) at 8,000 characters and prints WARNING lines saying so. `fit_text`
keeps the beginning and the end (where a summary or a verdict usually is), drops whole lines between them,
and says in their place how many were left out and where the whole text is."""

from __future__ import annotations

TAG_VALUE_LIMIT = 8000  # MLflow's MAX_TAG_VAL_LENGTH
_FENCE = "```"


def fit_text(text: str, limit: int = TAG_VALUE_LIMIT, *, whole_at: str | None = None) -> str:
    """``text`` itself when it has at most ``limit`` characters; else its first and last lines (the last
    ones given up to half the room) around one line naming how many lines were left out and ``whole_at``
    (where the whole text is), apart by blank lines. A code block the cut leaves open is closed, and reopened after the note."""
    if len(text) <= limit:
        return text
    lines = text.split("\n")
    note = "*… {n} line(s) left out to stay within MLflow's limit of " f"{limit:,} characters" + (
        f"; the whole text: {whole_at}" if whole_at else "") + ".*"
    room = limit - len(note.format(n=len(lines))) - 2 * (len(_FENCE) + 1) - 4
    tail: list[str] = []
    used = 0
    for line in reversed(lines[1:]):
        if used + len(line) + 1 > room // 2:
            break
        tail.insert(0, line)
        used += len(line) + 1
    head: list[str] = []
    for line in lines[: len(lines) - len(tail)]:
        if used + len(line) + 1 > room:
            break
        head.append(line)
        used += len(line) + 1
    if not head:  # one line longer than the room: its start
        head = [lines[0][: max(0, room - used - 1)]]
    left_out = len(lines) - len(head) - len(tail)
    if sum(line.startswith(_FENCE) for line in head) % 2:
        head.append(_FENCE)
    if sum(line.startswith(_FENCE) for line in tail) % 2:
        tail.insert(0, _FENCE)
    return "\n".join([*head, "", note.format(n=left_out), "", *tail])  # blank lines: not a table row
