"""`coupon-saga`: the operators' tool to find, inspect and re-drive sagas, and audit the stores.

Exit codes: 0 fine, 1 problems found (a saga missing, failed sagas listed, a saga refused),
2 usage error, 3 a store unreachable or the settings wrong, 141 the output's reader gone.
"""

# The verbs work on the ports (sagas/replay_verbs.py); this module reads the command line
# and wires the real stores to them. Also `python -m orchestrator.cli`.

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, NoReturn, TypeVar

from sagas.errors import SagaConflict
from sagas.operations import LIST_FILTERS
from sagas.ports import SagaLog
from sagas.replay_output import print_error
from sagas.replay_verbs import (
    Exit,
    ToolError,
    audit_stores,
    drive_one,
    list_sagas,
    recover_all,
    show_saga,
)
from sagas.version import package_version

if TYPE_CHECKING:
    from orchestrator.settings import Settings

T = TypeVar("T")


# --- arguments -------------------------------------------------------------------------


def saga_id_argument(text: str) -> str:
    """Saga ids are UUIDs (the service makes them); anything else could name another key."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a saga id (a UUID): {text!r}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ToolError(Exit.USAGE, "usage", f"{message} (see `{self.prog} --help`)")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output, errors too")
    common.add_argument(
        "-v", "--verbose", action="store_true", help="also the service's log lines, on stderr"
    )
    summary, exit_codes = (__doc__ or "\n\n").strip().split("\n\n")
    parser = _Parser(prog="coupon-saga", description=summary, epilog=exit_codes)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    _looking_verbs(commands, common)
    _driving_verbs(commands, common)
    audit = commands.add_parser(
        "audit", parents=[common], help="check invariants 1-4 across PostgreSQL and MongoDB"
    )
    audit.add_argument("--coupon", metavar="NAME", help="only this coupon")
    audit.add_argument(
        "--repair", action="store_true", help="reconcile what the facts allow, and say what"
    )
    return parser


def _looking_verbs(commands: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    """list and show: they only read the saga log."""
    listing = commands.add_parser("list", parents=[common], help="list sagas, newest first")
    listing.add_argument(
        "--status",
        choices=LIST_FILTERS,
        help="only sagas in this state; in-flight: running or compensating; "
        "stuck: in flight with its lease run out",
    )
    listing.add_argument("--coupon", metavar="NAME", help="only the sagas of this coupon")
    listing.add_argument(
        "--limit",
        type=positive_int,
        default=50,
        metavar="N",
        help="at most N sagas (default 50); says so on stderr when more match",
    )
    show = commands.add_parser("show", parents=[common], help="a saga's record and timeline")
    show.add_argument("saga_id", type=saga_id_argument, help="as in the X-Saga-Id header")


def _driving_verbs(commands: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    """resume, compensate and recover: they drive sagas."""
    for verb, what in [
        ("resume", "drive a stuck or failed saga to its end"),
        ("compensate", "undo a saga that has not passed its pivot"),
    ]:
        command = commands.add_parser(verb, parents=[common], help=what)
        command.add_argument("saga_id", type=saga_id_argument, help="as in the X-Saga-Id header")
        command.add_argument("--dry-run", action="store_true", help="say what would be done")
    recover = commands.add_parser("recover", parents=[common], help="drive every stuck saga")
    recover.add_argument(
        "--older-than",
        type=float,
        metavar="SECONDS",
        default=0.0,
        help="only sagas not updated for this long (besides a lapsed lease)",
    )
    recover.add_argument("--dry-run", action="store_true", help="say what would be done")


# --- wiring: the real stores --------------------------------------------------------------


def _settings() -> Settings:
    from orchestrator.process.budget import for_the_tool
    from orchestrator.settings import SettingsError, load_settings

    try:
        # A small client: two connections a store, failing fast with the store's name.
        return for_the_tool(load_settings())
    except SettingsError as error:
        wrong = "; ".join(str(error).splitlines())
        raise ToolError(Exit.UNAVAILABLE, "bad_settings", f"bad settings: {wrong}") from None


async def _run(args: argparse.Namespace) -> Exit:
    # The entry point wires real stores; everything above works on ports.
    from orchestrator.saga.engine import describe
    from sagas.errors import StoreNotSetUp, StoreUnavailable

    settings = _settings()
    try:
        return await _dispatch(args, settings)
    except StoreUnavailable as error:
        raise ToolError(Exit.UNAVAILABLE, "store_unavailable", describe(error)) from None
    except StoreNotSetUp as error:  # no such database or role, no schema: the deployment's
        raise ToolError(Exit.UNAVAILABLE, "store_not_set_up", str(error)) from None
    except SagaConflict as error:
        raise ToolError(Exit.PROBLEMS, "refused", str(error)) from None


async def _open(stack: AsyncExitStack, stores: AbstractAsyncContextManager[T]) -> T:
    """Open stores, turning a refusal (a wrong role, a missing database, a malformed URL)
    into one line and exit code 3, like a store that does not answer."""
    from orchestrator.saga.engine import describe
    from sagas.errors import StoreNotSetUp, StoreUnavailable

    try:
        return await stack.enter_async_context(stores)
    except (StoreUnavailable, StoreNotSetUp):
        raise
    except Exception as error:
        raise ToolError(
            Exit.UNAVAILABLE, "store_unavailable", f"cannot open the stores: {describe(error)}"
        ) from None


async def _dispatch(args: argparse.Namespace, settings: Settings) -> Exit:
    async with AsyncExitStack() as stack:
        if args.command in ("list", "show"):
            # Only Redis: an operator must be able to look while another store is down.
            saga_log = await _open(stack, _saga_log_only(settings))
            if args.command == "list":
                return await list_sagas(
                    saga_log, args.status, args.coupon, args.limit, json_out=args.json
                )
            return await show_saga(saga_log, args.saga_id, json_out=args.json)
        from orchestrator.bootstrap import open_tool_components

        components = await _open(stack, open_tool_components(settings))
        if args.command == "audit":
            return await audit_stores(
                components.auditor, args.coupon, repair=args.repair, json_out=args.json
            )
        if args.command == "recover":
            return await recover_all(
                components.saga_log,
                components.recoverer,
                args.older_than,
                dry_run=args.dry_run,
                json_out=args.json,
            )
        return await drive_one(
            components.saga_log,
            components.recoverer,
            args.command,
            args.saga_id,
            dry_run=args.dry_run,
            json_out=args.json,
        )


@asynccontextmanager
async def _saga_log_only(settings: Settings) -> AsyncIterator[SagaLog]:
    from orchestrator.bootstrap import redis_client, redis_saga_log

    async with redis_client(settings) as client:
        yield redis_saga_log(settings, client)


# What a shell reports for a command SIGPIPE ended (`coupon-saga show ID | head`).
# Python ignores SIGPIPE, and must: the tool's store connections would die of it too.
READER_GONE = 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> NoReturn:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            code = _answer(argv)
        finally:
            sys.stdout.flush()  # here, so a reader gone away is caught below, not at exit
    except BrokenPipeError:
        # Nothing more can reach the reader; point stdout at /dev/null so the
        # interpreter's own flush at exit has nothing left to fail on.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(READER_GONE)
    sys.exit(code)


def _answer(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
        # The answer says what went wrong, once; the service's own log lines only on -v.
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.CRITICAL + 1,
            format="%(levelname)s %(name)s: %(message)s",
        )
        return asyncio.run(_run(args))
    except ToolError as error:
        print_error(error.kind, error.message, error.details, json_out="--json" in argv)
        return error.code


if __name__ == "__main__":
    main()
