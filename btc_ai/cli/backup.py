"""`btc-ai backup` and `btc-ai restore`: one verified zip of the local store, and its way back."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from btc_ai.cli.common import EXIT_OK, check_writable, error, flag
from btc_ai.domain.errors import UserInputError


def add_backup_parser(sub: Any) -> None:
    backup = sub.add_parser(
        "backup", help="archive the local store, artifacts, checkpoints and configs in one verified zip",
        description="Write <dest>/BTC_AI_<YYYY-MM-DD>_v<VERSION>_<DESCRIPTION>.zip: a consistent snapshot of the "
                    "local SQLite tracking database (safe while a training writes), the artifact folders it refers "
                    "to, checkpoints/, configs/ and any --include paths, with a manifest of sha256 hashes and "
                    "sessions. An existing archive is never overwritten. With --verify ZIP: check an archive's "
                    "manifest and every hash instead. Exit codes: 0 done (or archive intact); 2 bad input, "
                    "including an archive that is damaged, altered or not a btc-ai backup.")
    flag(backup, "version", metavar="VERSION", help="numbers separated by dots, e.g. 1.4 (a leading v is dropped)")
    flag(backup, "description", metavar="TEXT", help="1-64 letters, digits, '_' or '-', e.g. post_training_stable")
    flag(backup, "dest", metavar="DIR", help="folder for the archive (default backups/)")
    flag(backup, "include", action="append", default=[], metavar="PATH",
         help="also archive this file or folder of the project (repeatable)")
    flag(backup, "tracking_uri", metavar="URI",
         help="the SQLite store to back up (default $MLFLOW_TRACKING_URI or ./mlruns/mlflow.db)")
    flag(backup, "verify", metavar="ZIP", help="only check this archive: manifest, entry names and every sha256")


def add_restore_parser(sub: Any) -> None:
    restore = sub.add_parser(
        "restore", help="verify a backup, then restore it into a new or empty folder",
        description="Check every entry name and hash of ZIP before writing anything, restore it into DIR (which "
                    "must not exist or be empty) and point the database's artifact locations at DIR/mlruns, so "
                    "`cd DIR && btc-ai report|resume ...` works from the restored store alone. Exit codes: 0 "
                    "restored; 2 bad input (a damaged, altered or unsafe archive, or a non-empty DIR).")
    restore.add_argument("archive", metavar="ZIP", help="a btc-ai backup archive")
    flag(restore, "into", metavar="DIR", required=True, help="the folder to restore into (new or empty)")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def run_backup(args: argparse.Namespace) -> int:
    """Write an archive, or with --verify check one (a BackupError is the user's: one line, exit 2)."""
    # loaded when the command runs, so `btc-ai --help` stays fast
    from btc_ai.recovery.signals import exit_code, graceful_interrupts

    try:
        if args.verify:
            return _verify(args)
        if args.version is None or args.description is None:
            raise UserInputError("backup needs --version and --description, e.g. btc-ai backup --version 1.4 "
                                 "--description post_training_stable (or --verify ZIP)")
        check_writable(args.dest or "backups", "the backup folder", "--dest")
        from btc_ai.desk.backup import create_backup
        from btc_ai.tracking.paths import resolve_tracking_uri
        from btc_ai.tracking.stores import probe, sqlite_file

        database = sqlite_file(resolve_tracking_uri(args.tracking_uri))
        if database is not None:
            probe(database)  # not a database, unreadable: one line before anything is made
        uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        with graceful_interrupts():
            result = create_backup(args.version, args.description, dest=args.dest or "backups", tracking_uri=uri,
                                   include=args.include)
    except KeyboardInterrupt as exc:
        error("interrupted: no archive was written")
        return exit_code(exc)
    for warning in result.warnings:
        print(f"btc-ai: warning: {warning}", file=sys.stderr)
    print(f"backup: {result.path}")
    print(f"  {result.files} files ({_size(result.payload_bytes)}, archive {_size(result.archive_bytes)}), "
          f"{len(result.sessions)} sessions, {result.seconds:.1f} s")
    print(f"  check it: btc-ai backup --verify {result.path}")
    print(f"  restore it: btc-ai restore {result.path} --into DIR")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    given = [f"--{n}" for n in ("version", "description", "dest") if getattr(args, n) is not None]
    given += ["--include"] if args.include else []
    if given:
        raise UserInputError(f"--verify checks an existing archive; drop {', '.join(given)}")
    # loaded when the command runs, so `btc-ai --help` stays fast
    from btc_ai.desk.backup import verify_backup

    checked = verify_backup(args.verify)
    print(f"OK: {checked.path} | {checked.files} files, {_size(checked.payload_bytes)}, "
          f"{len(checked.sessions)} sessions, every sha256 matches its manifest")
    return EXIT_OK


def run_restore(args: argparse.Namespace) -> int:
    # loaded when the command runs, so `btc-ai --help` stays fast
    from btc_ai.desk.backup import restore_backup
    from btc_ai.recovery.signals import exit_code, graceful_interrupts

    check_writable(args.into, "the restore folder", "--into", renamed_into_place=True)
    try:
        with graceful_interrupts():
            result = restore_backup(args.archive, args.into)
    except KeyboardInterrupt as exc:
        error(f"interrupted: nothing was restored into {args.into}")
        return exit_code(exc)
    print(f"restored {result.files} files and {len(result.sessions)} sessions into {result.path} "
          f"(artifact locations moved from {result.original_store} to {result.path / 'mlruns'}: "
          f"{result.rewritten} entries)")
    for session in result.sessions[-5:]:
        print(f"  session {session['run_id']} {session.get('name') or ''} ({session.get('status') or session.get('run_status')})")
    example = result.sessions[-1]["run_id"] if result.sessions else "<RUN_ID>"
    print(f"use it: cd {result.path} && btc-ai report {example}   (with MLFLOW_TRACKING_URI unset)")
    print(f"    or: MLFLOW_TRACKING_URI={result.tracking_uri} btc-ai report {example}")
    return EXIT_OK
