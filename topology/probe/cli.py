"""``python -m topology.probe``: the diagnostics CLI (see ``--help`` and docs/probe-cli.md).

A thin face over the probe engine the resolver uses (:mod:`topology.probing.prober`,
through :mod:`topology.probe._session`):
arguments and environment in, one snapshot per round out, rendered as a
table or JSON. Every line written goes through :class:`Output`, which
scrubs every known password and anything shaped like one (URL userinfo,
``password=``), so no password reaches the terminal, a log or a traceback;
unexpected errors are reported as one scrubbed line, never a traceback.
With a DCS (``--patroni-config``, ``--etcd``, ``--rest``) the run is
:mod:`topology.probe._dcs_run`'s: the DCS read once, beside SQL.

Timeouts: a run ends within about ``--timeout`` (all hosts probed
concurrently) plus a bounded close (0.5 s at most); with a DCS, its read
comes first, within ``--timeout`` per endpoint plus 1 s. The event loop's
worker threads (name resolution) are never waited for at exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TextIO
from urllib.parse import unquote, unquote_plus

from topology.errors import ConfigurationError
from topology.probe._dcs_read import PASSWORD_ENV
from topology.probe._dcs_run import plan_dcs, run_dcs
from topology.probe._grants import check_all, exit_code, render
from topology.probe._output import PROG, Output
from topology.probe._render import LoggedChange, document, judge, summary, table
from topology.probe._session import ProbeSession
from topology.probe._target import Target, resolve_target
from topology.probe._watch import Screen, watch
from topology.probe.args import Arguments, UsageError, parse_args
from topology.probing.snapshot import Snapshot
from topology.trace import Counters

__all__ = ["EXIT_INTERNAL", "EXIT_USAGE", "Output", "main"]

EXIT_USAGE = 64  # sysexits.h EX_USAGE
EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE
EXIT_INTERRUPTED = 130


class _ScrubbingFormatter(logging.Formatter):
    """One scrubbed line per record: exception text replaced by its last line."""

    def __init__(self, output: Output) -> None:
        super().__init__(f"{PROG}: %(name)s: %(message)s")
        self.output = output

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            last = (str(exc).strip().splitlines() or [""])[-1]
            message += f" ({type(exc).__name__}: {last})"
        return self.output.scrub(f"{PROG}: {record.name}: {message}".replace("\n", " "))


def _quiet_logging(output: Output) -> None:
    handler = logging.StreamHandler(output.err)
    handler.setFormatter(_ScrubbingFormatter(output))
    logging.basicConfig(level=logging.ERROR, handlers=[handler], force=True)
    sys.unraisablehook = lambda unraisable: None  # e.g. a driver's __del__ at exit


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` on a new loop; never wait for worker threads (a stuck DNS lookup)."""
    loop = asyncio.new_event_loop()
    executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix=PROG)
    loop.set_default_executor(executor)
    main_task = loop.create_task(coro)
    try:
        return loop.run_until_complete(main_task)
    except KeyboardInterrupt:
        main_task.cancel()
        loop.run_until_complete(asyncio.wait((main_task,), timeout=1.0))
        return EXIT_INTERRUPTED
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
        executor.shutdown(wait=False, cancel_futures=True)
        loop.close()


def _document_line(
    snapshot: Snapshot,
    args: Arguments,
    changes: Sequence[LoggedChange],
    counters: Counters | None = None,
) -> str:
    verdict = judge(snapshot, args.lag)
    doc = document(snapshot, verdict, args.lag, at=time.time(), changes=changes)
    if args.watch is not None:  # one object per line
        if counters is not None:  # the same counts as the screen's "counters:" line
            doc["counters"] = counters.as_json()
        return json.dumps(doc, separators=(",", ":"))
    return json.dumps(doc, indent=2)


def _report(snapshot: Snapshot, args: Arguments, output: Output) -> int:
    verdict = judge(snapshot, args.lag)
    if args.json:
        output.line(_document_line(snapshot, args, ()))
    else:
        for text in table(snapshot, args.lag):
            output.line(text)
        output.line(summary(verdict))
    return verdict.exit_code


def _frame(
    snapshot: Snapshot,
    args: Arguments,
    screen: Screen,
    log: Sequence[LoggedChange],
    counters: Counters,
) -> list[str]:
    header = (
        f"{PROG} every {args.watch:g}s  timeout {args.timeout:g}s  {args.driver}  "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}  (Ctrl-C to quit)"
    )
    verdict = summary(judge(snapshot, args.lag))
    # The counts topology.otel's metrics are made of (docs/observability.md).
    totals = screen.wrap(f"counters: {counters.summary()}")
    lines = [header, "", *table(snapshot, args.lag), *screen.wrap(verdict), *totals, ""]
    room = max(screen.height() - len(lines) - 2, 3) if screen.tty else len(log)
    shown = list(log)[-room:] if room else []
    lines.append("role changes:" if shown else "role changes: none yet")
    lines.extend(f"  {entry.line()}" for entry in shown)
    return lines


async def _watch(session: ProbeSession, args: Arguments, output: Output, counters: Counters) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    screen = Screen(output.out, output.write)

    def show(snapshot: Snapshot, changes: list[LoggedChange], log: Sequence[LoggedChange]) -> None:
        if args.json:
            output.line(_document_line(snapshot, args, changes, counters))
        else:
            screen.show(_frame(snapshot, args, screen, log, counters))

    assert args.watch is not None
    try:
        await watch(session, args.watch, stop, show, tracer=counters)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


async def _probe(args: Arguments, target: Target, output: Output) -> int:
    counters = Counters()
    session = ProbeSession(
        target.hosts, target.options, args.driver, timeout=args.timeout, tracer=counters
    )
    try:
        if args.watch is not None:
            return await _watch(session, args, output, counters)
        return _report(await session.round(), args, output)
    finally:
        await session.close()


def _url_secrets(arg: str) -> list[str]:
    """The password, sslpassword and probe_password in a URL-shaped argument (scrubbed first).

    As in ``topology.hosts``: the credentials end at the last ``@`` before the
    first ``/``; with a ``/`` in the password (which parse_url refuses),
    everything up to the last ``@`` is scrubbed.
    """
    rest = arg.partition("://")[2]
    head, _, tail = rest.partition("/")
    userinfo, at, _ = head.rpartition("@")
    if not at and "@" in tail:
        userinfo = (head + "/" + tail).rpartition("@")[0]
    found = [unquote(userinfo.partition(":")[2])] if userinfo else []
    after_credentials = rest[len(userinfo) + 1 :] if userinfo else rest
    query = after_credentials.partition("?")[2].partition("#")[0]
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key in ("sslpassword", "probe_password"):
            found.append(unquote_plus(value))
    return found


def _check_driver(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        raise UsageError(
            f"the {name} driver is not installed (pip install 'ctxdb-topology[{name}]')"
        )


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    process_hooks: bool = True,
) -> int:
    """Run the CLI; returns the exit status (see ``--help``). Never raises but SystemExit.

    ``process_hooks`` installs the process-wide parts (a scrubbing logging
    handler, a silent ``sys.unraisablehook``); turn it off to call ``main``
    from inside another program, such as a test.
    """
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    secrets = [env.get("PGPASSWORD", ""), env.get(PASSWORD_ENV, "")]
    secrets += [s for arg in argv for s in _url_secrets(arg)]
    output = Output(out or sys.stdout, err or sys.stderr, secrets)
    if process_hooks:
        _quiet_logging(output)
    try:
        args = parse_args(argv)
        _check_driver(args.driver)
        if args.dcs is not None:
            plan = plan_dcs(args, env, output.error)
            output.add_secrets(plan.source.secrets + plan.given.secrets)
            return _guarded(lambda: _run(run_dcs(args, env, plan, output)), output)
        target = resolve_target(
            args.hosts, args.url, env, user=args.user, database=args.dbname, warn=output.error
        )
        output.add_secrets(target.secrets)
    except (UsageError, ConfigurationError) as exc:
        output.error(f"{exc} (see --help)")
        return EXIT_USAGE
    if args.check_grants:
        return _guarded(lambda: _run(_grants(args, target, output)), output)
    return _guarded(lambda: _run(_probe(args, target, output)), output)


async def _grants(args: Arguments, target: Target, output: Output) -> int:
    reports = await check_all(target.hosts, target.options, args.driver, args.timeout)
    database = target.options[0].database or "" if target.options else ""
    for text in render(reports, database, args.json):
        output.line(text)
    return exit_code(reports)


def _guarded(run: Callable[[], int], output: Output) -> int:
    try:
        return run()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (e.g. `| head`): end quietly
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), output.out.fileno())
        return 0
    except Exception as exc:  # one scrubbed line instead of a traceback
        output.error(f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_INTERNAL
