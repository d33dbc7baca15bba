"""The ``hoard`` command: one module per subcommand, imported only when that command runs.

``hoard ls`` should not pay for importing aiohttp, the proxy and libfuse bindings, so the
group knows each command by module name and loads it on demand (``--help`` loads them all).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from hoard.proxy.sources import load_all

__all__ = ["cli", "main"]

#: command name -> (module in hoard.cli, attribute)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("cmd_serve", "serve"),
    "mount": ("cmd_mount", "mount"),
    "umount": ("cmd_mount", "umount"),
    "prefetch": ("cmd_prefetch", "prefetch"),
    "ls": ("cmd_ls", "ls"),
    "info": ("cmd_info", "info"),
    "pin": ("cmd_pin", "pin"),
    "unpin": ("cmd_pin", "unpin"),
    "gc": ("cmd_gc", "gc"),
    "verify": ("cmd_verify", "verify_cmd"),
    "rm": ("cmd_rm", "rm"),
    "add": ("cmd_add", "add"),
    "export": ("cmd_transfer", "export_cmd"),
    "import": ("cmd_transfer", "import_cmd"),
    "push": ("cmd_push", "push"),
    "cache": ("cmd_cache", "cache"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The sources this hoard serves, from the registry (each flag's help names its
        environment variable; see ``hoard serve --help``)."""
        rows = [(name, spec.info.summary) for name, spec in load_all().items()]
        with formatter.section("Sources"):
            formatter.write_dl(rows)
        super().format_epilog(ctx, formatter)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        load_all()  # the source registry: which sources exist, their settings and defaults
        module = importlib.import_module(f"hoard.cli.{spec[0]}")
        command: Any = getattr(module, spec[1])
        return command  # type: ignore[no-any-return]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hoard", prog_name="hoard")
def cli() -> None:
    """hoard: a content-addressed store, pull-through proxy and read-only mount for ML models.

    \b
    Serve:     hoard serve      (Hugging Face API + hoard API on 127.0.0.1:8090)
    Mount:     hoard mount DIR  (DIR/<source>/<owner>/<repo>/<file>, fetched lazily)
    Maintain:  hoard ls | info | cache | prefetch | pin | gc | verify | rm | add | export | import
    Publish:   hoard push DIR <source>/<owner>/<repo>
    """


def main() -> None:
    cli(prog_name="hoard")


if __name__ == "__main__":
    main()
