"""proofwell.toml parsing: defaults, globs, kinds, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.gate.config import ConfigError, Expect, ModelKind, load_config


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "mod.py").write_text("def f(x: Real) -> Real:\n    return x\n")
    (tmp_path / "sys.json").write_text("{}")
    (tmp_path / "p").mkdir()
    for name in ("b.vnnlib", "a.vnnlib", "c.json"):
        (tmp_path / "p" / name).write_text("")
    return tmp_path


def load(repo: Path, text: str):
    (repo / "proofwell.toml").write_text(text)
    return load_config(repo / "proofwell.toml")


def test_defaults_globs_and_kinds(repo: Path) -> None:
    config = load(
        repo,
        '[[check]]\nname = "n"\nmodel = "m.onnx"\nproperties = ["p/*.vnnlib", "p/a.vnnlib"]\n'
        '[[check]]\nname = "m"\nmodel = "mod.py"\nproperties = "p/c.json"\nexpect = "violated"\n'
        'timeout = 5\n[[check]]\nname = "s"\nmodel = "sys.json"\n'
        '[[check]]\nname = "sub"\nmodel = "m.onnx"\nproperties = ["p/a.vnnlib"]\n'
        'subnetwork = {outputs = ["h0"]}\n',
    )
    n, m, s, sub = config.checks
    assert [config.relative(p) for p in n.properties] == ["p/a.vnnlib", "p/b.vnnlib"]
    assert (n.kind, n.expect, n.timeout_s) == (ModelKind.ONNX, Expect.HOLDS, 60.0)
    assert (m.kind, m.expect, m.timeout_s) == (ModelKind.MODULE, Expect.VIOLATED, 5.0)
    assert (s.kind, s.properties) == (ModelKind.SYSTEM, ())
    assert sub.subnetwork is not None and sub.subnetwork.to_json() == {"outputs": ["h0"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "key 'check': add at least one"),
        ('title = "x"\n', "unknown key 'title'"),
        ('[[check]]\nname = "n"\nmodel = "m.onnx"\nproperties = ["p/*.txt"]\n', "matches no"),
        ('[[check]]\nname = "n"\nmodel = "m.txt"\nproperties = ["p/a.vnnlib"]\n', "key 'model'"),
        ('[[check]]\nname = "n"\nmodel = "m.onnx"\nproperties = []\n', "key 'properties'"),
        (
            '[[check]]\nname = "n"\nmodel = "m.onnx"\nproperties = ["p/a.vnnlib"]\ntimeout = -1\n',
            "check 'n' (check[1]): key 'timeout'",
        ),
        (
            '[[check]]\nname = "n"\nmodel = "m.onnx"\nproperties = ["p/a.vnnlib"]\nfoo = 1\n',
            "key 'foo': unknown key",
        ),
        (
            '[[check]]\nname = "n"\nmodel = "mod.py"\nproperties = ["p/c.json"]\n'
            'subnetwork = {inputs = ["x"]}\n',
            "key 'subnetwork'",
        ),
        (
            '[[check]]\nname = "n"\nmodel = "m.onnx"\nproperties = ["p/a.vnnlib"]\n'
            'subnetwork = {outputs = "h0"}\n',
            "key 'subnetwork.outputs'",
        ),
        ('[[check]]\nname = "s"\nmodel = "sys.json"\nproperties = ["p/c.json"]\n', "own property"),
        (
            '[[check]]\nname = "n"\nmodel = "m.onnx"\nproperties = ["p/a.vnnlib"]\n' * 2,
            "check 'n' (check[2]): key 'name': 'n' is used by another check",
        ),
    ],
)
def test_errors_name_the_check_and_key(repo: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load(repo, text)
    assert message in str(info.value) and "proofwell.toml" in str(info.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "proofwell.toml")
