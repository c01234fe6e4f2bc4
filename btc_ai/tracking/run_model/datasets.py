"""A run's data as MLflow dataset inputs: what the UI's Datasets column shows and what ``search_runs`` finds
with ``dataset.name``, ``dataset.digest`` and ``dataset.context``.

One input per span a run used (a session's train, validation and test spans, a backtest's span, a
walk-forward's whole series), its context the span's role. MLflow keeps one input per dataset (name and
digest) and run, and one dataset row per name and digest in an experiment, so each span is its own dataset:
its digest is :func:`span_digest` of the data fingerprint (the ``btc_ai.data_fingerprint`` tag) and the
span's ends, and its profile says the span, the rows and the files with their sha256. Only the schema and
that profile are stored, never the candles. Logging the same spans again (a resumed session, a replayed
journal) adds nothing: MLflow's store skips an input the run has already.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from btc_ai.tracking.run_model.names import BUILTIN_DATA, DATAFRAME_DATA

CONTEXT_TAG = "mlflow.data.context"  # MLflow's input tag for a dataset's role (the UI shows it beside the name)
CONTEXT_BACKTEST, CONTEXT_WALK_FORWARD = "backtest", "walk_forward"
# MLflow's schema format (what its pandas datasets write): the time index and the five candle columns
SCHEMA = json.dumps({"mlflow_colspec": [{"type": "datetime", "name": "timestamp", "required": True}] + [
    {"type": "double", "name": name, "required": True} for name in ("open", "high", "low", "close", "volume")]})
_BINANCE_PARTS = 2  # BTCUSDT-5m-2024-01.zip: symbol and interval before the month


@dataclass(frozen=True)
class DataSpan:
    """One span of the data a run used, and its role (train, validation, test, backtest, walk_forward)."""

    context: str
    start: str  # ISO 8601, UTC, first bar
    end: str  # ... last bar
    bars: int


@dataclass(frozen=True)
class DataInputs:
    """The data a run read: where from, its fingerprint, and the files with their sha256."""

    source: str  # the recorded source (sources.source_text: paths one per line), builtin:default or dataframe
    fingerprint: str  # data_fingerprint of the candles, as the run's btc_ai.data_fingerprint tag
    interval: str = ""
    files: tuple[dict[str, Any], ...] = field(default=())  # path and sha256 of each file read (and its URL)
    files_sha256: str = ""  # the set's fingerprint (DataReport.files_sha256)

    @classmethod
    def of(cls, source: str, fingerprint: str, report: Any = None) -> DataInputs:
        """From a data report (``btc_ai.domain.data.DataReport``; None when there is none)."""
        if report is None:
            return cls(source, fingerprint)
        from btc_ai.domain.data.report import format_interval

        return cls.of_files(source, fingerprint, format_interval(report.interval), [f.to_dict() for f in report.files])

    @classmethod
    def of_files(cls, source: str, fingerprint: str, interval: str, files: Sequence[dict[str, Any]]) -> DataInputs:
        """From the files as a report's ``to_dict`` lists them (path, sha256, and the URL of a fetched one)."""
        from btc_ai.domain.data.sources import files_digest

        kept = tuple({k: f[k] for k in ("path", "sha256", "url") if f.get(k)} for f in files)
        return cls(source, fingerprint, interval, kept, files_digest([f["sha256"] for f in kept]) if kept else "")

    def cut(self, fingerprint: str) -> DataInputs:
        """The same source and files for a slice of their candles (a walk-forward fold's): its own fingerprint."""
        return replace(self, fingerprint=fingerprint)

    @property
    def name(self) -> str:
        """BTCUSDT-5m for Binance's monthly files, else the file's or folder's name (builtin, dataframe)."""
        if self.source == BUILTIN_DATA:
            return "builtin"
        if self.source == DATAFRAME_DATA:
            return DATAFRAME_DATA
        from btc_ai.domain.data.sources import binance_name

        names = [Path(f["path"]).name for f in self.files]
        if len(names) > 1 and all(binance_name(n) for n in names):
            kinds = {"-".join(n.split("-")[:_BINANCE_PARTS]) for n in names}
            if len(kinds) == 1:
                return kinds.pop()
        return Path(self.source.splitlines()[0]).name or self.source

    def _source(self) -> tuple[str, str]:
        """(MLflow source type, source JSON): the URL files were fetched from (their common folder when many),
        else the files, the code for built-in or DataFrame data."""
        if self.source in (BUILTIN_DATA, DATAFRAME_DATA):
            return "code", json.dumps({"tags": {"btc_ai.data_source": self.source}})
        urls = [f.get("url") for f in self.files]
        if urls and all(urls):
            url = urls[0] if len(urls) == 1 else _folder_of(urls)
            return "http", json.dumps({"url": url})
        return "local", json.dumps({"uri": self.source})

    def records(self, spans: Sequence[DataSpan]) -> list[dict[str, Any]]:
        """One dataset input per span, as the journaled ``log_inputs`` operation takes them (plain JSON)."""
        source_type, source = self._source()
        return [{"name": self.name, "digest": span_digest(self.fingerprint, span), "source_type": source_type,
                 "source": source, "schema": SCHEMA, "context": span.context,
                 "profile": json.dumps({"context": span.context, "start": span.start, "end": span.end,
                                        "bars": span.bars, "interval": self.interval,
                                        "data_fingerprint": self.fingerprint, "files_sha256": self.files_sha256,
                                        "files": list(self.files)})} for span in spans]


def _folder_of(urls: Sequence[str]) -> str:
    """The deepest folder URL every one of ``urls`` lies in (monthly and daily files: their market's)."""
    parts = [url.split("/") for url in urls]
    common = []
    for column in zip(*(p[:-1] for p in parts), strict=False):
        if len(set(column)) > 1:
            break
        common.append(column[0])
    return "/".join(common) + "/"


def span_digest(fingerprint: str, span: DataSpan) -> str:
    """A span's dataset digest: sha256 of the data fingerprint and the span's ends, cut to the 36 characters
    MLflow stores. The same span of the same candles gives the same digest in any run."""
    return hashlib.sha256(f"{fingerprint}\n{span.start}\n{span.end}".encode()).hexdigest()[:36]
