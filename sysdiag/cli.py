"""The command line: `sysdiag <command>` and `diagnose` (short for `sysdiag diagnose`).

Thin on purpose: each command lives in `sysdiag/commands/`. This module turns
every known failure into one line on stderr and the documented exit code:
0 nothing found, 1 findings, 2 usage or input error, 3 incomplete, 130 interrupted.
Heavy modules (the engine, the probes) are imported by the commands that need
them, so `--help` and `sysdiag schema` stay fast.
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Optional, Sequence

import typer

from .commands.collect import collect_command
from .commands.common import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_USAGE, UserError, warn
from .commands.diagnose import diagnose_command
from .commands.info import probes_command, schema_command, symptoms_command
from .commands.rules import rules_app
from .commands.serve import serve_command
from .errors import InputError
from .version import __version__, python_problem

_SETTINGS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(name="sysdiag", add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False, context_settings=_SETTINGS,
                  help="Rule-based diagnosis of a Linux host: name a symptom, get ranked "
                       "hypotheses with evidence and the next commands to run.")
app.command("diagnose")(diagnose_command)
app.command("collect")(collect_command)
app.command("symptoms")(symptoms_command)
app.command("probes")(probes_command)
app.command("schema")(schema_command)
app.add_typer(rules_app, name="rules")
app.command("serve")(serve_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sysdiag {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Rule-based diagnosis of a Linux host."""


#: `diagnose --symptom S ...`: the same command as its own program
diagnose_app = typer.Typer(name="diagnose", add_completion=False, pretty_exceptions_enable=False,
                           context_settings=_SETTINGS)
diagnose_app.command()(diagnose_command)


def _run(typer_app: typer.Typer, prog: str, argv: Optional[Sequence[str]]) -> int:
    """Run a typer app and map every outcome to an exit code."""
    command = typer.main.get_command(typer_app)
    try:
        code = command.main(args=list(argv) if argv is not None else None, prog_name=prog,
                            standalone_mode=False)
        code = code if isinstance(code, int) else 0
        if code == EXIT_INTERRUPTED:  # typer turns KeyboardInterrupt into Exit(130)
            warn("interrupted")
        return code
    except (InputError, UserError) as err:
        warn(str(err))
        return EXIT_USAGE
    except typer.TyperException as err:
        if type(err).__name__ == "NoArgsIsHelpError":
            print(err.format_message(), file=sys.stderr)
        else:
            warn(f"{err.format_message()} (see `{prog} --help`)")
        return err.exit_code if err.exit_code else EXIT_USAGE
    except (KeyboardInterrupt, typer.Abort):
        warn("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly; stdout cannot take more
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaced for the interpreter exit
        return EXIT_INTERRUPTED
    except Exception as err:  # the top level: contained and reported, never a raw traceback
        if os.environ.get("SYSDIAG_DEBUG"):
            traceback.print_exc()
        warn(f"internal error: {type(err).__name__}: {err} (the diagnosis did not complete; "
             "SYSDIAG_DEBUG=1 shows the traceback; please report it)")
        return EXIT_INCOMPLETE


def _start(typer_app: typer.Typer, prog: str, argv: Optional[Sequence[str]]) -> int:
    problem = python_problem()
    if problem:
        print(f"{prog}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return _run(typer_app, prog, argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console script `sysdiag`."""
    sys.exit(_start(app, "sysdiag", argv))


def diagnose_main(argv: Optional[Sequence[str]] = None) -> None:
    """Console script `diagnose`: short for `sysdiag diagnose`."""
    sys.exit(_start(diagnose_app, "diagnose", argv))


if __name__ == "__main__":
    main()
