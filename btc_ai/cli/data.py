"""`btc-ai data ...`: the data a training reads. `data fetch` downloads Binance's public kline dumps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from btc_ai.cli.common import EXIT_OK, check_writable, flag
from btc_ai.domain.errors import UserInputError

INTERVALS = "1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1mo"  # as in btc_ai.desk.data_fetch, kept light here


def add_parser(sub: Any) -> None:
    data = sub.add_parser("data", help="fetch candle data (`btc-ai data fetch BTCUSDT 5m --from 2024-01 --to 2024-12`)")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND",
                                   parser_class=type(data))
    fetch = commands.add_parser(
        "fetch", help="download Binance's monthly kline zips, verified against their .CHECKSUM files",
        description="Download <SYMBOL>-<INTERVAL>-<YYYY-MM>.zip for every month from --from to --to (the month "
                    "under way as daily zips up to yesterday) from Binance's public data (or a mirror) into "
                    "--dest, each with its .CHECKSUM beside it, so `--data_path DIR` reads them. Files already "
                    "here and verified are not fetched again; an interrupted download resumes from its .part "
                    "file; dropped connections, timeouts and 5xx answers are retried (5 attempts a file, "
                    "waits from $BTC_AI_FETCH_BACKOFF_S seconds, default 1, doubling). Exit codes: 0 done; 2 bad "
                    "input, a month the mirror lacks, or a file that stays damaged or unreachable (one line "
                    "names it; the verified files stay); 130 interrupted.")
    fetch.add_argument("symbol", metavar="SYMBOL", help="a Binance symbol, e.g. BTCUSDT")
    fetch.add_argument("interval", metavar="INTERVAL", help=f"one of {INTERVALS}")
    fetch.add_argument("--from", dest="start", metavar="YYYY-MM", required=True, help="the first month")
    fetch.add_argument("--to", dest="end", metavar="YYYY-MM", required=True,
                       help="the last month (at most this one, UTC: it comes as daily files up to yesterday)")
    flag(fetch, "dest", metavar="DIR", default="data", help="the folder to write into (default data/)")
    flag(fetch, "market", choices=["spot", "futures-um"], default="spot",
         help="spot (default) or futures-um (USD-M futures)")
    flag(fetch, "base_url", metavar="URL",
         help="the mirror's root (default $BTC_AI_DATA_URL, else https://data.binance.vision)")
    flag(fetch, "parquet", metavar="FILE", help="also write the joined candles as one Parquet file")


def run(args: argparse.Namespace) -> int:
    return {"fetch": run_fetch}[args.data_command](args)


def run_fetch(args: argparse.Namespace) -> int:
    from btc_ai.desk.data_fetch import (  # pandas, requests: not for --help
        check_request,
        fetch_klines,
        write_parquet,
    )

    request = check_request(args.symbol, args.interval, args.start, args.end, dest=args.dest, market=args.market,
                            base_url=args.base_url)
    check_writable(args.dest, "the data folder", "--dest")
    if args.parquet:
        if Path(args.parquet).is_dir():
            name = f"{request.symbol}-{request.interval}.parquet"
            raise UserInputError(f"--parquet {args.parquet} is a folder; give a file name, e.g. "
                                 f"{Path(args.parquet) / name}")
        check_writable(str(Path(args.parquet).absolute().parent), "the Parquet file's folder", "--parquet")

    def warn(line: str) -> None:
        print(f"btc-ai: warning: {line}", file=sys.stderr, flush=True)

    result = fetch_klines(request, say=lambda line: print(line, flush=True), warn=warn)
    counts = result.outcomes
    span = f"{request.first:%Y-%m}" + (f"..{request.last:%Y-%m}" if request.last != request.first else "")
    print(f"fetched {request.symbol} {request.interval} {request.market} {span} into {request.dest}/: "
          f"{len(result.files)} files ({counts['downloaded']} downloaded, {counts['resumed']} resumed, "
          f"{counts['verified']} already verified), {result.bytes_received / (1 << 20):.1f} MiB received in "
          f"{result.seconds:.1f} s; every file's sha256 matches its .CHECKSUM")
    if args.parquet and result.files:
        rows, where = write_parquet(result.files, args.parquet)
        print(f"parquet: {args.parquet}: {rows:,} candles, {where}")
    return EXIT_OK
