"""The `interlock` command: a Typer app whose commands are thin calls into the modules.

Each command group lives in its own module and is registered here; `main` turns every
usage error and every InterlockError into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys

import click
import typer

from interlock.errors import InterlockError, PolicyError

app = typer.Typer(
    name="interlock",
    help="interlock: a human-in-the-loop approval gateway for AI agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _register() -> None:
    # Imported here so `interlock --help` stays fast and each group owns its module.
    from interlock.cli import policy as policy_cli

    app.add_typer(policy_cli.app, name="policy")


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2: bad usage, 1: the command failed)."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="interlock", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        print("interlock: aborted", file=sys.stderr)
        return 130
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "interlock"
        print(f"{where}: {exc.format_message()}", file=sys.stderr)
        return 2
    except click.ClickException as exc:
        print(f"interlock: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except PolicyError as exc:
        for diag in exc.diagnostics:
            print(str(diag), file=sys.stderr)
        return 1
    except InterlockError as exc:
        print(f"interlock: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())
