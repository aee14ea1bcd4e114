"""Each Lua script's arguments are declared three times, in one order: its record in verify/store/scripts.py, its
header's ``ARGV, by name`` list, and its ``args({...})`` call. These tests hold the three together, and a script's
header to the KEYS it reads, so that adding an argument cannot shift another one unnoticed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
import redis

from verify.store.scripts import INCLUDE, Lua, Scripts

LUA = resources.files("verify.store").joinpath("lua")
HEADER_NAME = re.compile(r"^--   ([a-z_]+)(?:\s|$)")  # a name, then its description; continuations are indented further
ARGS_CALL = re.compile(r"^local A(, rest)? = args\(\{(.*?)\}\)$", re.MULTILINE | re.DOTALL)


def _scripts() -> dict[str, Lua[Any]]:
    client = redis.Redis()  # never connected: registering a script only hashes it
    try:
        return {lua.name: lua for lua in Scripts(client).all()}
    finally:
        client.close()


SCRIPTS = _scripts()


def _text(name: str) -> str:
    return LUA.joinpath(f"{name}.lua").read_text(encoding="utf-8")


def _header(text: str) -> Iterator[str]:
    """The script's leading comment lines."""
    for line in text.splitlines():
        if not line.startswith("--"):
            return
        yield line


def _header_args(text: str) -> tuple[list[str], bool]:
    """The names the header's ``ARGV, by name`` list gives, and whether a ``then ...`` line says more follows."""
    lines = list(_header(text))
    start = lines.index("-- ARGV, by name (_args.lua):")
    names: list[str] = []
    for line in lines[start + 1 :]:
        match = HEADER_NAME.match(line)
        if match:
            names.append(match.group(1))
        elif not re.match(r"^--\s{5,}\S", line):  # not a continuation of a description
            return names, line.startswith("-- then ")
    return names, False


def _body(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def test_every_script_file_is_a_script_of_the_store() -> None:
    files = {entry.name.removesuffix(".lua") for entry in LUA.iterdir() if entry.name.endswith(".lua")}
    assert {name for name in files if not name.startswith("_")} == set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_header_the_lua_and_the_record_name_the_same_arguments_in_the_same_order(name: str) -> None:
    text = _text(name)
    header, more = _header_args(text)
    calls = ARGS_CALL.findall(_body(text))
    assert len(calls) == 1, f"{name}.lua reads its arguments with one args({{...}}) call"
    rest, names = calls[0]
    lua = re.findall(r"'([a-z_]+)'", names)
    record = list(SCRIPTS[name].args._fields)
    assert header == lua == record, f"{name}.lua: header {header}, args() {lua}, {SCRIPTS[name].args.__name__} {record}"
    # What follows the record (quota items, ...) is read from `rest`, and said so in the header.
    after = _body(text).split("args(", 1)[1].split("})", 1)[1]
    assert more == bool(rest) == bool(re.search(r"\brest\b", after)), f"{name}.lua: what follows its record"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_script_reads_its_arguments_only_by_name(name: str) -> None:
    text = _text(name)
    assert "_args" in INCLUDE.match(text).group(1).split()  # type: ignore[union-attr]
    # ARGV[i] with a computed index reads what follows the record (from rest on); a literal index is positional.
    assert not re.search(r"ARGV\[\s*\d", _body(text)), f"{name}.lua reads ARGV by position"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_header_documents_every_key_the_script_reads(name: str) -> None:
    text = _text(name)
    documented = {int(n) for line in _header(text) for n in re.findall(r"KEYS\[(\d+)\]", line)}
    used = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", _body(text))}
    assert documented == used == set(range(1, len(used) + 1)), f"{name}.lua: KEYS documented {documented}, read {used}"
