"""The ``hoard`` command: one module per subcommand, registered here."""

from __future__ import annotations

import click

from .cmd_add import add
from .cmd_gc import gc
from .cmd_info import info
from .cmd_ls import ls
from .cmd_pin import pin, unpin
from .cmd_rm import rm
from .cmd_verify import verify_cmd

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hoard", prog_name="hoard")
def cli() -> None:
    """hoard: a content-addressed store, pull-through proxy and read-only mount for ML models.

    \b
    Serve:     hoard serve      (Hugging Face API + hoard API on 127.0.0.1:8090)
    Mount:     hoard mount DIR  (/DIR/huggingface/<org>/<repo>/<file>, fetched lazily)
    Maintain:  hoard ls | info | prefetch | pin | gc | verify | rm | add | export | import
    """


for command in (add, ls, info, verify_cmd, gc, pin, unpin, rm):
    cli.add_command(command)


def _register_later_commands() -> None:
    from . import cmd_mount, cmd_prefetch, cmd_serve, cmd_transfer

    cli.add_command(cmd_serve.serve)
    cli.add_command(cmd_mount.mount)
    cli.add_command(cmd_mount.umount)
    cli.add_command(cmd_prefetch.prefetch)
    cli.add_command(cmd_transfer.export_cmd)
    cli.add_command(cmd_transfer.import_cmd)


_register_later_commands()


def main() -> None:
    cli(prog_name="hoard")


if __name__ == "__main__":
    main()
