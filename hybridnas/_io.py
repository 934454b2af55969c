"""Small file helpers shared by the rooms, and the one guarded reader of
YAML/JSON files that come from users (specs, spaces, configs).

Files from outside are untrusted: ``read_text`` refuses files over a size
limit and bytes that are not UTF-8, ``parse_yaml`` refuses documents whose
aliases would expand past a node limit (a "billion laughs" bomb) or that nest
too deeply. Each raises the caller's error class with one line naming the
file and the limit.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["write_atomic", "read_text", "parse_yaml", "parse_json", "load_data_file",
           "FileLimits", "FILE_LIMITS"]


@dataclass(frozen=True)
class FileLimits:
    """Limits on user files. A spec is a few hundred bytes and nodes; a space
    or config a few thousand."""

    #: bytes of one spec, space or config file
    max_bytes: int = 1 << 20
    #: YAML/JSON nodes after expanding every alias (scalars, lists and maps)
    max_nodes: int = 100_000
    #: nesting of lists/maps
    max_depth: int = 64


FILE_LIMITS = FileLimits()


def _user_error() -> type[Exception]:
    from .errors import UserError

    return UserError


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Write ``path`` so that readers (a resuming search, a browser, another
    process) see the old file or the new one, never half of one.

    ``write(tmp)`` writes the content to a temporary path in the same folder;
    it is then renamed over ``path``. The temporary file gets the usual mode
    (some writers create owner-only files) and is removed if writing fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_text(path: str | os.PathLike, error: type[Exception] | None = None,
              limits: FileLimits = FILE_LIMITS) -> str:
    """The text of a user file; ``error`` (default ``UserError``) names the
    file when it is missing, unreadable, larger than ``limits.max_bytes`` or
    not UTF-8."""
    error = error or _user_error()
    try:
        with open(path, "rb") as fh:
            data = fh.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(data) > limits.max_bytes:
        raise error(f"{path}: file is larger than the limit of {limits.max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                    f"{e.start})") from None


def _bounded_loader(limits: FileLimits, error: type[Exception], source: str):
    import yaml

    class BoundedSafeLoader(yaml.SafeLoader):
        """SafeLoader that refuses documents too large once aliases expand."""

        def compose_document(self):  # noqa: D401 - PyYAML hook
            node = super().compose_document()
            _check_node_size(node, limits, error, source)
            return node

    return BoundedSafeLoader


def _check_node_size(root: Any, limits: FileLimits, error: type[Exception], source: str) -> None:
    """Count the nodes the document has with every alias expanded, visiting
    each distinct node once (so the count itself cannot blow up)."""
    import yaml

    sizes: dict[int, int] = {}
    depth_of: dict[int, int] = {}
    # iterative post-order walk: (node, depth, children done?)
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if depth > limits.max_depth:
            raise error(f"{source}: nested deeper than the limit of {limits.max_depth} levels")
        if isinstance(node, yaml.MappingNode):
            children = [c for pair in node.value for c in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            sizes[id(node)] = 1
            continue
        if not done:
            if id(node) in depth_of:
                if id(node) in sizes:
                    continue
                raise error(f"{source}: a YAML alias refers to itself (recursive structure)")
            depth_of[id(node)] = depth
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
            continue
        total = 1 + sum(sizes[id(c)] for c in children)
        if total > limits.max_nodes:
            raise error(f"{source}: YAML expands to more than the limit of {limits.max_nodes} "
                        f"nodes (aliases included)")
        sizes[id(node)] = total


def parse_yaml(text: str, source: str, error: type[Exception] | None = None,
               limits: FileLimits = FILE_LIMITS) -> Any:
    """``yaml.safe_load`` of ``text`` within ``limits``; malformed YAML and
    oversized documents raise ``error`` (default ``UserError``) naming ``source``."""
    import yaml

    error = error or _user_error()
    if len(text) > limits.max_bytes:
        raise error(f"{source}: text is longer than the limit of {limits.max_bytes} characters")
    loader = None
    try:
        loader = _bounded_loader(limits, error, source)(text)  # checks the characters
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise error(f"{source}: not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise error(f"{source}: nested deeper than the limit of {limits.max_depth} levels") from None
    finally:
        if loader is not None:
            loader.dispose()


def parse_json(text: str, source: str, error: type[Exception] | None = None,
               limits: FileLimits = FILE_LIMITS) -> Any:
    """``json.loads`` of ``text`` within ``limits`` (JSON has no aliases, so the
    size and nesting limits are all it needs)."""
    error = error or _user_error()
    if len(text) > limits.max_bytes:
        raise error(f"{source}: text is longer than the limit of {limits.max_bytes} characters")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{source}: not valid JSON: {e}") from None
    except RecursionError:
        raise error(f"{source}: nested too deeply") from None


def load_data_file(path: str | os.PathLike, error: type[Exception] | None = None,
                   limits: FileLimits = FILE_LIMITS) -> Any:
    """Read a ``.json`` or YAML user file through the guards above."""
    text = read_text(path, error, limits)
    if str(path).endswith(".json"):
        return parse_json(text, str(path), error, limits)
    return parse_yaml(text, str(path), error, limits)
