"""dae-study COMMAND [ARGS]: the study's commands, installed by `pip install -e .`

    dae-study launch [ARGS]   run a grid into the results store: python study/launch.py ARGS
    dae-study report [ARGS]   the paper's tables and figures from it: python analysis/report.py ARGS
    dae-study status STORE    how far a launch into the store is, per curve: study/status.py

`dae-study COMMAND --help` lists a command's arguments. A command's module is imported only when it
is named, so the report and the status never load torch or Ray.
"""

import importlib
import os
import signal
import sys

# command -> the module whose main(argv) runs it
COMMANDS = {"launch": "study.launch", "report": "analysis.report", "status": "study.status"}
EXIT_USAGE = 2


def stop_cleanly_while_importing(name: str) -> None:
    """The launcher's imports take seconds: a signal then ends it with one line and the status
    that signal's exit means, not a traceback. Its main() installs the handlers of the launch."""

    def stop(signum, frame):
        os.write(2, f"{name}: interrupted by {signal.Signals(signum).name}: nothing ran\n".encode())
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
            signal.signal(signum, stop)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        asked_for_help = bool(args) and args[0] in ("-h", "--help")
        if args and not asked_for_help:
            print(f"dae-study: unknown command {args[0]!r}", file=sys.stderr)
        print(__doc__.strip(), file=sys.stdout if asked_for_help else sys.stderr)
        return 0 if asked_for_help else EXIT_USAGE
    command, *rest = args
    if argv is None:  # a process of its own (in-process callers keep their signal handlers)
        sys.argv[0] = f"dae-study {command}"  # usage and errors name the command as typed
        if command == "launch":
            stop_cleanly_while_importing(command)
    return importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
