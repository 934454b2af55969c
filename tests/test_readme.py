"""The README and ``--help`` agree: every flag the README documents exists.

A usage such as ``hybridnas export RUN [--pareto|--top K]`` must name flags of
that command's parser; a flag mentioned alone in prose (```--resume```) must
belong to some command.
"""
from __future__ import annotations

import argparse
import os
import re

import pytest

from hybridnas.cli import build_parser

README = os.path.join(os.path.dirname(__file__), "..", "README.md")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _fragments(text: str) -> list[str]:
    """Code-block lines (continuations joined) and inline code spans."""
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        out += [line.split("#", 1)[0] for line in block.replace("\\\n", " ").splitlines()]
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    # a span may wrap onto the next line of a paragraph
    out += [" ".join(span.replace("\\|", "|").split()) for span in re.findall(r"`([^`]+)`", prose)]
    return [f.strip() for f in out if f.strip()]


def documented_usages(text: str, commands) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(command, flag, fragment) for every usage of a command, and (flag, fragment)
    for flags named without their command."""
    usages, loose = [], []
    for frag in _fragments(text):
        words = frag.split()
        if words[0] == "hybridnas" and len(words) > 1 and words[1] in commands:
            cmd = words[1]
        elif words[0] in commands and len(words) > 1:  # `latency check --space S -n 50`
            cmd = words[0]
        else:
            cmd = None
        for flag in FLAG.findall(frag):
            if cmd:
                usages.append((cmd, flag, frag))
            elif frag.startswith("--"):
                loose.append((flag, frag))
    return usages, loose


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def test_the_parser_finds_usages_and_flags():
    commands = _commands()
    text = ("```bash\nhybridnas export results/r --pareto \\\n    --top 3   # a comment --nope\n```\n"
            "Use `hybridnas train X --epochs 2` or `--resume`; `latency\ncheck --space S -n 5`.")
    usages, loose = documented_usages(text, commands)
    assert {(c, f) for c, f, _ in usages} == {("export", "--pareto"), ("export", "--top"),
                                             ("train", "--epochs"), ("latency", "--space"),
                                             ("latency", "-n")}
    assert [f for f, _ in loose] == ["--resume"]


def test_every_documented_flag_exists_in_its_command():
    commands = _commands()
    with open(README) as f:
        usages, loose = documented_usages(f.read(), commands)
    assert len(usages) > 20  # the parser still finds the README's usages
    missing = [f"hybridnas {cmd} {flag}   (README: `{frag}`)" for cmd, flag, frag in usages
               if flag not in _flags(commands[cmd])]
    every = set().union(*(_flags(p) for p in commands.values()))
    missing += [f"{flag} belongs to no command   (README: `{frag}`)" for flag, frag in loose
                if flag not in every]
    assert not missing, "README documents flags --help does not have:\n" + "\n".join(missing)


@pytest.mark.parametrize("cmd", sorted(_commands()))
def test_every_command_is_in_the_readme_table(cmd):
    with open(README) as f:
        text = f.read()
    assert f"`hybridnas {cmd}" in text, f"`hybridnas {cmd}` is missing from the README's table"
