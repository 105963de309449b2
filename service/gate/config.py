"""proofwell.toml: `[[check]]` tables parsed into frozen dataclasses.

Every error names the offending key and, inside a check, the check (by name or index), e.g.
``proofwell.toml: check 'sat-net' (check[2]): key 'expect': must be "holds" or "violated"``.
"""

from __future__ import annotations

import glob
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT_S = 60.0
CHECK_KEYS = ("name", "model", "properties", "expect", "timeout", "subnetwork", "margin", "seed")


class ConfigError(Exception):
    """An invalid proofwell.toml; the message names the file, check and key."""


class Expect(StrEnum):
    HOLDS = "holds"
    VIOLATED = "violated"


class ModelKind(StrEnum):
    ONNX = "onnx"
    MODULE = "module"
    SYSTEM = "system"


@dataclass(frozen=True)
class Subnetwork:
    inputs: tuple[str, ...] | None = None
    outputs: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, list[str]]:
        data = {"inputs": self.inputs, "outputs": self.outputs}
        return {k: list(v) for k, v in data.items() if v}


@dataclass(frozen=True)
class Check:
    name: str
    model: Path
    kind: ModelKind
    properties: tuple[Path, ...]
    expect: Expect = Expect.HOLDS
    timeout_s: float = DEFAULT_TIMEOUT_S
    subnetwork: Subnetwork | None = None
    margin: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class GateConfig:
    path: Path
    root: Path
    checks: tuple[Check, ...]

    def relative(self, path: Path) -> str:
        """A path as the user wrote it: relative to the config's folder, with slashes."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.as_posix()


def load_config(path: Path) -> GateConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data, path)


def parse_config(data: dict[str, Any], path: Path) -> GateConfig:
    root = path.parent
    unknown = sorted(set(data) - {"check"})
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}': expected only [[check]] tables")
    tables = data.get("check")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: key 'check': add at least one [[check]] table")
    checks: list[Check] = []
    for index, table in enumerate(tables, start=1):
        where = f"{path}: check[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: key 'check': each check must be a table")
        if isinstance(table.get("name"), str):
            where = f"{path}: check '{table['name']}' (check[{index}])"
        check = _parse_check(table, root, _Where(where))
        if any(c.name == check.name for c in checks):
            raise ConfigError(f"{where}: key 'name': '{check.name}' is used by another check")
        checks.append(check)
    return GateConfig(path=path, root=root, checks=tuple(checks))


@dataclass(frozen=True)
class _Where:
    prefix: str

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.prefix}: key '{key}': {message}")


def _parse_check(table: dict[str, Any], root: Path, where: _Where) -> Check:
    unknown = sorted(set(table) - set(CHECK_KEYS))
    if unknown:
        raise where.error(unknown[0], f"unknown key; a check has {', '.join(CHECK_KEYS)}")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise where.error("name", "required: a non-empty string")
    model, kind = _model(table.get("model"), root, where)
    properties = _properties(table.get("properties"), root, kind, where)
    return Check(
        name=name,
        model=model,
        kind=kind,
        properties=properties,
        expect=_expect(table.get("expect", "holds"), where),
        timeout_s=_number(table, "timeout", DEFAULT_TIMEOUT_S, where),
        subnetwork=_subnetwork(table.get("subnetwork"), kind, where),
        margin=_number(table, "margin", 0.0, where),
        seed=_seed(table.get("seed", 0), where),
    )


def _model(value: Any, root: Path, where: _Where) -> tuple[Path, ModelKind]:
    if not isinstance(value, str) or not value:
        raise where.error("model", "required: the path of an .onnx model, a module .py or a .json")
    kinds = {".onnx": ModelKind.ONNX, ".py": ModelKind.MODULE, ".json": ModelKind.SYSTEM}
    path = root / value
    kind = kinds.get(path.suffix.lower())
    if kind is None:
        raise where.error("model", f"'{value}': expected an .onnx, .py or .json file")
    if not path.is_file():
        raise where.error("model", f"'{value}': no such file (paths are relative to the toml)")
    return path, kind


def _properties(value: Any, root: Path, kind: ModelKind, where: _Where) -> tuple[Path, ...]:
    if kind is ModelKind.SYSTEM:
        if value is not None:
            raise where.error("properties", "a system .json holds its own property: remove it")
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise where.error("properties", "required: a list of property files or globs")
    found: list[Path] = []
    for pattern in value:
        if glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(str(root / pattern), recursive=True))
            if not matches:
                raise where.error("properties", f"'{pattern}' matches no file")
        else:
            matches = [root / pattern]
            if not matches[0].is_file():
                raise where.error("properties", f"'{pattern}': no such file")
        found += [m for m in matches if m not in found]
    return tuple(found)


def _expect(value: Any, where: _Where) -> Expect:
    try:
        return Expect(value)
    except ValueError:
        raise where.error("expect", f'must be "holds" or "violated", got {value!r}') from None


def _number(table: dict[str, Any], key: str, default: float, where: _Where) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise where.error(key, f"must be a number >= 0, got {value!r}")
    return float(value)


def _seed(value: Any, where: _Where) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error("seed", f"must be an integer, got {value!r}")
    return value


def _subnetwork(value: Any, kind: ModelKind, where: _Where) -> Subnetwork | None:
    if value is None:
        return None
    if kind is not ModelKind.ONNX:
        raise where.error("subnetwork", "only an ONNX model can be narrowed to a subnetwork")
    if not isinstance(value, dict) or set(value) - {"inputs", "outputs"} or not value:
        raise where.error("subnetwork", "must be a table {inputs = [...], outputs = [...]}")
    names: dict[str, tuple[str, ...] | None] = {}
    for key in ("inputs", "outputs"):
        items = value.get(key)
        if items is not None and (
            not isinstance(items, list) or not all(isinstance(i, str) and i for i in items)
        ):
            raise where.error(f"subnetwork.{key}", "must be a list of tensor names")
        names[key] = tuple(items) if items else None
    return Subnetwork(names["inputs"], names["outputs"])
