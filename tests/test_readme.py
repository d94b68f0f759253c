"""The README's commands are real: every `genfill ...` line in its bash blocks parses with the CLI's own
parser, and every preset it names with --config resolves (a renamed flag or preset fails here)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from genfill.cli import build_parser
from genfill.config import resolve_config

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.split("  #")[0].strip() for line in lines if line.strip().startswith("genfill ")]


def test_the_readme_has_commands():
    assert len(readme_commands()) >= 20


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    argv = shlex.split(command, comments=True)[1:]
    args = build_parser().parse_args(argv)
    config = getattr(args, "config", None)
    if isinstance(config, str) and not config.startswith(("runs/", "/")):
        assert resolve_config(config).is_file()
