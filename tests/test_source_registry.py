"""Adding a source is adding its module: the registry (proxy/sources/__init__.py) drives the
CLI's options, ``hoard --help``, the README's configuration table and the adapter's settings.

A throw-away source module is written to a temporary directory and put on the search path of
the ``hoard.proxy.sources`` package before the registry loads (``load_all`` lists the
package's ``__path__``; nothing else names sources). Each check runs a real ``hoard`` process
with the module and one without it, so a listing written by hand cannot pass for the
registry's.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .harness import serve_env

NAME = "testsrc"
SUMMARY = "a source written by tests/test_source_registry.py, in a temporary directory"
TOKEN = "testsrc-secret-7f3a"

#: the source module: one setting, a token variable, and an adapter that only says what it was
#: built with (its setting, whether it has its token) by refusing every address
MODULE = f'''
"""The ``{NAME}`` source: exists only for a test."""

from __future__ import annotations

from hoard.proxy.origin import Credentials, ResolvedRef, Source
from hoard.proxy.sources import BuildContext, Setting, SourceSpec
from hoard.store.errors import NotFound
from hoard.store.sources import SourceInfo


class TestSource(Source):
    name = "{NAME}"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    async def resolve(self, addr, ref, creds: Credentials) -> ResolvedRef:
        token = "with its token" if creds.token("{NAME}") == "{TOKEN}" else "without a token"
        raise NotFound(f"{{addr.repo_key}}: {NAME} at {{self.endpoint}} ({{token}}) has no repos")

    async def snapshot(self, addr, resolved, creds):
        raise NotFound("no snapshots")

    async def read(self, rf, start, end):
        raise NotFound("no files")
        yield b""


def _build(ctx: BuildContext) -> Source:
    return TestSource(ctx.settings["{NAME}_endpoint"])


SPEC = SourceSpec(
    info=SourceInfo("{NAME}", default_ref="main", summary="{SUMMARY}"),
    build=_build,
    settings=(Setting("{NAME}_endpoint", "https://{NAME}.invalid", "URL of the test origin."),),
    token_env="TESTSRC_TOKEN",
)
'''

#: runs ``hoard`` (or prints the config table) with ``argv[1]`` added to the package's path
#: when it is not empty: the registry then loads the module as it loads its own
LAUNCH = textwrap.dedent("""
    import sys
    import hoard.proxy.sources as sources
    extra, what, *args = sys.argv[1:]
    if extra:
        sources.__path__.append(extra)
    if what == "table":
        from hoard.cli.config import config_table
        print(config_table())
    else:
        from hoard.cli.main import main
        sys.argv = ["hoard", *args]
        main()
""")


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("sources")
    (where / f"{NAME}.py").write_text(MODULE)
    return where


def run(extra: Path | None, what: str, *args: str, env: dict[str, str] | None = None,
        code: int = 0) -> str:  # fmt: skip
    """stdout + stderr of one process, with the module (``extra``) or without it."""
    proc = subprocess.run([sys.executable, "-c", LAUNCH, str(extra or ""), what, *args], env=env or serve_env(),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, f"{what} {args}: exit {proc.returncode}: {proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def _flat(text: str) -> str:
    """Help text with click's line wrapping undone."""
    return " ".join(text.split())


def test_a_new_module_is_listed_by_hoard_help(module_dir: Path) -> None:
    for extra in (module_dir, None):
        section = run(extra, "cli", "--help").split("Sources:", 1)[1]
        listed = re.search(rf"^ +{NAME} ", section, re.M) is not None
        assert listed == (extra is not None), section
        assert (_flat(SUMMARY) in _flat(section)) == (extra is not None), section


def test_its_setting_is_a_flag_with_its_env_var_of_every_command_reaching_origins(module_dir: Path) -> None:
    for cmd in ("serve", "mount", "prefetch", "ls", "push"):
        text = _flat(run(module_dir, "cli", cmd, "--help"))
        shown = (rf"--{NAME}-endpoint \S+ URL of the test origin\. \(default https://{NAME}\.invalid\) "
                 rf"\[env var: HOARD_TESTSRC_ENDPOINT\]")  # fmt: skip
        assert re.search(shown, text), (cmd, text)
        assert f"--{NAME}-endpoint" not in run(None, "cli", cmd, "--help"), cmd


def test_its_rows_are_in_the_config_table(module_dir: Path) -> None:
    table = run(module_dir, "table").splitlines()
    setting = (f"| {NAME}: URL of the test origin | `--{NAME}-endpoint` | `HOARD_TESTSRC_ENDPOINT` | "
               f"`{NAME}_endpoint` | `https://{NAME}.invalid` |")  # fmt: skip
    token = f"| {NAME}: the local user's token (mount, prefetch) | | `TESTSRC_TOKEN` | | none |"
    assert setting in table and token in table, "\n".join(table)
    without = run(None, "table").splitlines()
    assert [row for row in table if row not in without] == [setting, token]


def test_its_addresses_reach_its_adapter_with_its_settings_and_its_token(module_dir: Path, tmp_path: Path) -> None:
    """config.toml, the environment variable and the flag (in rising precedence) set the
    setting the adapter is built with; its token variable reaches it and is never printed;
    without the module neither the source nor its config.toml key exist."""
    home = tmp_path / "home"
    home.mkdir()
    address = f"{NAME}/someone/model"
    env = dict(serve_env(), HOARD_HOME=str(home))
    said = run(module_dir, "cli", "ls", address, env=env, code=3)
    assert f"{NAME} at https://{NAME}.invalid (without a token)" in said, said
    (home / "config.toml").write_text(f'{NAME}_endpoint = "http://from-config.invalid"\n')
    assert f"{NAME} at http://from-config.invalid " in run(module_dir, "cli", "ls", address, env=env, code=3)
    env_set = dict(env, HOARD_TESTSRC_ENDPOINT="http://from-env.invalid", TESTSRC_TOKEN=TOKEN)
    said = run(module_dir, "cli", "ls", address, env=env_set, code=3)
    assert f"{NAME} at http://from-env.invalid (with its token)" in said and TOKEN not in said, said
    flag = run(module_dir, "cli", "ls", address, f"--{NAME}-endpoint", "http://from-flag.invalid", env=env_set, code=3)
    assert f"{NAME} at http://from-flag.invalid (with its token)" in flag
    # without the module: its config.toml key and its addresses are unknown
    assert f"unknown setting(s) {NAME}_endpoint" in run(None, "cli", "ls", address, env=env, code=2)
    (home / "config.toml").unlink()
    unknown = run(None, "cli", "ls", address, env=env, code=2)
    assert f"unknown source {NAME!r}" in unknown, unknown
