"""The `hybridize` command line: plan -> convert -> distill -> eval -> push."""
from __future__ import annotations

import importlib
import importlib.util
import sys

import typer
from rich.console import Console

from ..errors import USER_ERRORS, Stopped

app = typer.Typer(
    name="hybridize",
    help="Convert Hugging Face attention models into hybrid linear/full-attention stacks.\n\n"
         "Example: hybridize convert smollm2-135m --ratio 3:1 -o out/smol-3to1",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


COMMAND_MODULES = ("core", "distill", "evaluate")  # each defines register(app)


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            importlib.import_module(f"{__name__}.{name}").register(app)


_register_commands()


def main() -> None:
    """Entry point: user mistakes become one red line and exit code 2, never a traceback."""
    try:
        app()
    except Stopped as err:
        err_console.print(f"[yellow]stopped:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except USER_ERRORS as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
