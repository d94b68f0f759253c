"""The README's commands are real: every `genfill ...` line in its bash blocks parses with the CLI's own
parser, and every preset it names with --config resolves (a renamed flag or preset fails here)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from genfill.cli import build_parser
from genfill.config import resolve_config

README = Path(__file__).resolve().parents[2] / "README.md"


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
    preset = getattr(args, "preset", None)
    if args.command == "reproduce":
        from genfill.reproduce import find_preset, plan_reproduce

        assert find_preset(preset).is_file()
        plan_reproduce(preset)  # every model config the preset names resolves and validates
    for run in (getattr(args, "checkpoint", None) or []) if isinstance(getattr(args, "checkpoint", None), list) \
            else [getattr(args, "checkpoint", None)]:
        # a run an example fills from is one the README trains (or the demo's), never a preset that needs CelebA
        if isinstance(run, str) and run.startswith("runs/") and run.count("/") == 1:
            assert run.split("/")[1] in TRAINED_RUNS, f"{command}: {run} is not trained by any README example"


def _trained_runs() -> set[str]:
    names = {"demo", "cmp"}
    for line in readme_commands():
        if line.startswith(("genfill train", "genfill pretrain")):
            args = build_parser().parse_args(shlex.split(line, comments=True)[1:])
            sets = dict(s.split("=", 1) for s in args.set if s.startswith("name="))
            names.add(sets.get("name") or Path(args.config).stem)
    return names


TRAINED_RUNS = _trained_runs()


def test_the_readme_opens_with_what_for_commands_and_a_picture():
    lines = README.read_text().splitlines()
    first = "\n".join(lines[:40])
    assert "make demo" in first and "make test" in first and "![" in first
    assert len(lines) < 250
