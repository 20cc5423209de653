"""The `lawtune` command line: one root, one module per area.

Each area module (`lawtune.<area>.cli`) holds its typer commands and imports only typer at the top, so
`lawtune --help` stays instant; heavy libraries (torch, transformers) are imported inside the commands.
"""

from __future__ import annotations

import sys

import typer

from lawtune.environment import configure
from lawtune.errors import LawtuneError

app = typer.Typer(
    name="lawtune",
    help="Turn an open LLM into a Chinese legal assistant: prepare → train → eval/compare → serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from lawtune.data import cli as data_cli
    from lawtune.evaluation import cli as evaluation_cli
    from lawtune.export import cli as export_cli
    from lawtune.kb import cli as kb_cli
    from lawtune.modeling import cli as modeling_cli
    from lawtune.serving import cli as serving_cli
    from lawtune.tools import cli as tools_cli
    from lawtune.training import cli as training_cli
    from lawtune import demo

    data_cli.register(app, rag_options=kb_cli.rag_training_options)  # prepare --kb: kb's step, data's command
    modeling_cli.register(app)
    training_cli.register(app)
    evaluation_cli.register(app)
    serving_cli.register(app)
    kb_cli.register(app)
    export_cli.register(app)
    tools_cli.register(app)
    demo.register(app)


configure()  # no hub downloads, warning filters: before the areas import their libraries
_register()


def main() -> None:
    """Console-script entry point: user errors become one red line and exit status 2."""
    from lawtune.memory import tune_heap

    try:
        tune_heap()  # LAWTUNE_MMAP_THRESHOLD_MIB: big tensors' memory back to the OS when freed (lawtune.memory)
        app()
    except LawtuneError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
