"""The `interlock` command: a Typer app whose commands are thin calls into the modules.

Each command group lives in its own module and is registered here; `main` turns every
usage error and every InterlockError into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys

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
    from interlock.cli import audit as audit_cli
    from interlock.cli import db as db_cli

    app.add_typer(db_cli.app, name="db")
    app.add_typer(audit_cli.app, name="audit")
    from interlock.cli import ops as ops_cli
    from interlock.cli import serve as serve_cli
    from interlock.cli import tokens as tokens_cli

    app.command()(serve_cli.serve)
    app.add_typer(tokens_cli.app, name="token")
    app.command()(ops_cli.pause)
    app.command()(ops_cli.unpause)
    from interlock.cli import autonomy as autonomy_cli

    app.add_typer(autonomy_cli.app, name="autonomy")
    from interlock.cli import grants as grants_cli

    app.add_typer(grants_cli.app, name="grants")
    from interlock.cli import demo as demo_cli
    from interlock.cli import review as review_cli

    app.command()(review_cli.queue)
    app.command()(review_cli.approve)
    app.command()(review_cli.deny)
    app.command()(demo_cli.demo)
    from interlock.cli import insights as insights_cli

    app.add_typer(insights_cli.app, name="insights")
    app.command(name="export-feedback")(insights_cli.export_feedback)
    from interlock.cli import integrations as integrations_cli

    app.command("mcp-proxy")(integrations_cli.mcp_proxy)
    app.add_typer(integrations_cli.hook_app, name="hook")


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2: bad usage, 1: the command failed)."""
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=argv, prog_name="interlock", standalone_mode=False)
        if isinstance(rc, int):  # without standalone mode, click returns Exit's code
            return rc
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        print("interlock: aborted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:
        # Typer's own click: usage errors (exit 2) and command errors share this base.
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())
            return 0
        where = ctx.command_path if ctx is not None else "interlock"
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        print(f"{where}: {message}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
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
