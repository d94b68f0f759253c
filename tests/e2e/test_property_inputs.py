"""Property test (issue 26): random numbers, strings and nestings fed to every config field and every numeric
CLI option never give an exit other than 0 or 2, nor a traceback. In-process `cli.main` calls; training is
`--dry-run` (bounded: it builds no cache), so each example takes milliseconds."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest
import yaml
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from genfill import cli  # noqa: E402
from genfill.config import PretrainConfig, RunConfig  # noqa: E402
from genfill.errors import GenfillError  # noqa: E402
from genfill.models import REGISTRY  # noqa: E402

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 100), st.integers(-2**80, 2**80), st.integers(2**31, 2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, -1, 2**31, 2**63, 2**64, 1e308, -0.0]),
    st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=12)


def _fields(cls, prefix: str = "") -> list[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _fields(hints[f.name], f"{prefix}{f.name}.")
        elif f.name != "model":
            out.append(f"{prefix}{f.name}")
    return out


RUN_FIELDS = _fields(RunConfig)
# model.<key> for every kind's own keywords: (kind, key)
MODEL_FIELDS = [(kind, f.name) for kind, cls in sorted(REGISTRY.items()) for f in dataclasses.fields(cls.Config)]
SSL_FIELDS = [f for f in _fields(PretrainConfig) if f.startswith("ssl.")]


def _as_set(value) -> str:
    """The value as `--set` text: YAML flow style (how a user would type a list or mapping)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, cache_root):
    from tests.conftest import tiny_raw

    root = tmp_path_factory.mktemp("prop")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw(root / "runs", cache_root)))
    return path


def _exit_0_or_2(argv: list[str], capsys) -> int:
    code = cli.main(argv)  # any exception but the CLI's own exit codes fails the test with its traceback
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err, err
    if code == 2:
        assert err.strip().count("\n") == 0 and err.startswith("genfill: error: "), err
    return code


PROFILE = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.parametrize("field", RUN_FIELDS)
@PROFILE
@given(value=VALUES, raw=st.booleans(), text=st.text(max_size=16))
def test_every_config_field_takes_any_value_with_exit_0_or_2(config_file, capsys, field, value, raw, text):
    setting = f"{field}={text if raw else _as_set(value)}"
    _exit_0_or_2(["train", "-c", str(config_file), "--dry-run", "--quiet", "--set", setting], capsys)


@pytest.mark.parametrize("kind_key", MODEL_FIELDS, ids=[f"{k}.{f}" for k, f in MODEL_FIELDS])
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(value=VALUES)
def test_every_model_field_takes_any_value_with_exit_0_or_2(config_file, capsys, kind_key, value):
    kind, key = kind_key
    _exit_0_or_2(["train", "-c", str(config_file), "--dry-run", "--quiet", "--set", f"model={{kind: {kind}}}",
                  "--set", f"model.{key}={_as_set(value)}"], capsys)


@pytest.mark.parametrize("field", SSL_FIELDS)
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(value=VALUES)
def test_every_pretrain_field_is_refused_or_taken_as_a_genfill_error(field, value):
    from genfill.loadconfig import build_pretrain_config

    raw = {"model": {"kind": "unet"}}
    node = raw
    keys = field.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    try:
        build_pretrain_config(raw)
    except GenfillError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600


def _numeric_options() -> list[tuple[str, str]]:
    """(command, option) for every option that takes a number (a genfill.validate type, or int/float)."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    out = []
    for name, sp in sub.choices.items():
        for action in sp._actions:
            if action.type in (int, float) or getattr(action.type, "__name__", "") in ("integer", "number"):
                out.append((name, action.option_strings[-1]))
    return sorted(out)


NUMERIC = _numeric_options()
NUMBER_TEXT = st.one_of(st.integers(-2**70, 2**70).map(str), st.floats().map(repr), st.text(max_size=10),
                        st.sampled_from(["nan", "inf", "-inf", "1e999", "0x10", " 3", "2**64", "", "-0", "1_0"]))


def test_the_numeric_options_are_all_found():
    assert ("fill", "--dilate") in NUMERIC and ("serve", "--timeout") in NUMERIC and ("sample", "--seed") in NUMERIC
    assert len(NUMERIC) >= 15


@pytest.fixture(scope="module")
def fill_files_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("numfill")
    Image.fromarray(np.full((12, 12, 3), 100, np.uint8)).save(d / "x.png")
    m = np.zeros((12, 12), np.uint8)
    m[3:6, 3:6] = 255
    Image.fromarray(m).save(d / "x_mask.png")
    return d


@pytest.mark.parametrize("option", NUMERIC, ids=[f"{c}{o}" for c, o in NUMERIC])
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(text=NUMBER_TEXT)
def test_every_numeric_cli_option_gives_exit_0_or_2(fill_files_dir, config_file, capsys, monkeypatch, option,
                                                    text):
    """`fill` (Telea on a 12x12 image), `train --dry-run` and `configs` run for real; the other commands' work
    (training, serving, evaluating, sampling, exporting, the cache) is replaced by a recorder once their
    arguments are parsed and checked."""
    command, flag = option
    ran = []
    real = {"fill": ["fill", str(fill_files_dir / "x.png"), "--method", "telea", "-o",
                     str(fill_files_dir / "out.png"), "--quiet"],
            "train": ["train", "-c", str(config_file), "--dry-run", "--quiet"], "configs": ["configs"]}
    from genfill import device

    # --threads is checked (thread_count) but not applied: 4096 torch threads would slow every later test
    monkeypatch.setattr(device, "set_threads", lambda arg=None: device.thread_count(arg))
    for name in dir(cli):
        if name.startswith("cmd_") and name not in ("cmd_fill", "cmd_train", "cmd_configs"):
            monkeypatch.setattr(cli, name, lambda args: ran.append(args))
    stubbed = {"sample": ["sample", "-c", "run"], "interpolate": ["interpolate", "-c", "run"],
               "eval": ["eval", "-c", "telea"], "pretrain": ["pretrain", "-c", "x"], "export": ["export", "r", "-o", "e"]}
    base = real.get(command) or stubbed.get(command) or [command]
    code = _exit_0_or_2([*base, f"{flag}={text}"], capsys)
    if code == 0 and command not in real:
        value = getattr(ran[0], flag.lstrip("-").replace("-", "_"))
        assert value is not None and (isinstance(value, int) or np.isfinite(value))
