"""Add and remove nodes in config.yaml, leaving every other byte of the file as it was.

ruamel.yaml composes the document to find where the ``nodes`` mapping and each entry start and end, and
renders the new entry; the edit itself is a splice of whole lines. So comments, blank lines, quoting and key
order elsewhere are untouched (a full re-dump would re-flow them), and ``add`` followed by ``remove`` of the
same node gives back the file byte for byte. Every write goes to a temp file in the same directory, is
validated with the loader as a whole document, and only then replaces the original.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import ipaddress
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pypxe_homelab.config.loader import default_config_text, parse_inventory, read_config_text, read_yaml
from pypxe_homelab.errors import UserError
from pypxe_homelab.identity import normalise_device_id

NEW_FILE_MODE = 0o644
DEFAULT_STEP = 2


@dataclass(frozen=True)
class NodeEdit:
    """What an edit did: the node's YAML text as written (empty for a removal)."""

    path: Path
    device_id: str
    text: str
    created: bool = False  # the file did not exist and was made from the template
    replaced: bool = False  # an entry for the device was already there and was replaced


@dataclass(frozen=True)
class _Entry:
    key: str
    device_id: str | None
    first: int  # 0-based line of the key
    last: int  # 0-based last line of its value, including comments indented under it
    indent: int
    field_indent: int | None  # column of its first field, when its value is a block mapping


@dataclass(frozen=True)
class _Layout:
    lines: list[str]
    newline: str
    step: int  # indentation step used by the file
    nodes_line: int | None  # 0-based line of the top-level ``nodes:`` key
    nodes_indent: int
    nodes_value: ScalarNode | MappingNode | None
    entries: list[_Entry]


# --- reading the document's shape ------------------------------------------------------------------------------


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_empty_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and str(node.tag).endswith(":null") and node.value == ""


def _last_line(node: Node, lines: list[str]) -> int | None:
    """0-based line where ``node``'s own text ends, or None for an empty value."""
    if isinstance(node, ScalarNode):
        if _is_empty_null(node):
            return None
        if node.style in ("|", ">"):
            end = node.end_mark.line - (1 if node.end_mark.column == 0 else 0)
            while end > node.start_mark.line and not lines[end].strip():
                end -= 1
            return end
        return node.end_mark.line
    if isinstance(node, (MappingNode, SequenceNode)):
        if node.flow_style:
            return node.end_mark.line
        items = node.value if isinstance(node, SequenceNode) else [n for pair in node.value for n in pair]
        found = [line for line in (_last_line(n, lines) for n in items) if line is not None]
        return max(found) if found else None
    return None


def _with_trailing_comments(last: int, indent: int, lines: list[str]) -> int:
    """Extend ``last`` over comment lines that follow directly and are indented deeper than ``indent``."""
    while last + 1 < len(lines) and _is_comment(lines[last + 1]) and _indent(lines[last + 1]) > indent:
        last += 1
    return last


def _detect_step(root: MappingNode) -> int:
    """The file's indentation step: how far the first nested block mapping is indented."""
    for key, value in root.value:
        if isinstance(value, MappingNode) and not value.flow_style and value.value:
            step = value.value[0][0].start_mark.column - key.start_mark.column
            if step > 0:
                return step
    return DEFAULT_STEP


def _layout(text: str, name: str) -> _Layout:
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    try:
        root = YAML(typ="rt").compose(text)
    except YAMLError:
        read_yaml(text, name)  # raises the one-line syntax error
        raise
    if root is None:
        return _Layout(lines, newline, DEFAULT_STEP, None, 0, None, [])
    if not isinstance(root, MappingNode) or root.flow_style:
        raise UserError(f"{name}: the file is not a block mapping of sections; edit it by hand")
    step = _detect_step(root)
    for key, value in root.value:
        if isinstance(key, ScalarNode) and key.value == "nodes":
            return _Layout(
                lines,
                newline,
                step,
                key.start_mark.line,
                key.start_mark.column,
                value,
                _entries(value, lines),
            )
    return _Layout(lines, newline, step, None, 0, None, [])


def _entries(nodes: Node, lines: list[str]) -> list[_Entry]:
    if not isinstance(nodes, MappingNode) or nodes.flow_style:
        return []
    entries = []
    for key, value in nodes.value:
        raw = str(key.value)
        try:
            device_id: str | None = normalise_device_id(raw)
        except ValueError:
            device_id = None
        indent = key.start_mark.column
        last = max(key.end_mark.line, _last_line(value, lines) or 0)
        field_indent = None
        if isinstance(value, MappingNode) and not value.flow_style and value.value:
            field_indent = value.value[0][0].start_mark.column
        first = key.start_mark.line
        entries.append(
            _Entry(raw, device_id, first, _with_trailing_comments(last, indent, lines), indent, field_indent)
        )
    return entries


# --- rendering a node ------------------------------------------------------------------------------------------


def _node_fields(
    address: ipaddress.IPv4Interface,
    gateway: ipaddress.IPv4Address | None,
    dns: Sequence[ipaddress.IPv4Address],
    hostname: str | None,
    extra: Mapping[str, Any] | None,
) -> CommentedMap:
    fields = CommentedMap()
    fields["address"] = str(address)
    if hostname:
        fields["hostname"] = hostname
    if gateway is not None:
        fields["gateway"] = str(gateway)
    if dns:
        servers = CommentedSeq(str(d) for d in dns)
        servers.fa.set_flow_style()
        fields["dns"] = servers
    for key, value in (extra or {}).items():
        if value is not None:
            fields[key] = value
    return fields


def _render_entry(device_id: str, fields: CommentedMap, indent: int, step: int, newline: str) -> list[str]:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=step, sequence=step + 2, offset=step)
    yaml.width = 4096
    buffer = io.StringIO()
    yaml.dump(CommentedMap([(device_id, fields)]), buffer)
    return [" " * indent + line + newline for line in buffer.getvalue().splitlines()]


# --- editing -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Insertion:
    lines: list[str]  # the file's lines, with an empty ``nodes: {}``/``nodes: ~`` value made a block
    index: int  # where the entry goes
    indent: int  # column of the entry's key
    before: list[str]  # lines to put before the entry (a blank line when entries are separated by one)
    add_nodes_key: bool  # there is no top-level ``nodes:`` yet


def _insertion(layout: _Layout) -> _Insertion:
    lines = list(layout.lines)
    if layout.nodes_line is None:
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += layout.newline
        before = [layout.newline] if lines and lines[-1].strip() else []
        return _Insertion(lines, len(lines), layout.step, [*before, "nodes:" + layout.newline], True)
    if layout.entries:
        last = layout.entries[-1]
        separated = len(layout.entries) > 1 and not lines[last.first - 1].strip()
        before = [layout.newline] if separated else []
        return _Insertion(lines, last.last + 1, layout.entries[0].indent, before, False)
    value = layout.nodes_value
    if isinstance(value, MappingNode) and value.flow_style and value.value:
        raise UserError("nodes is written in flow style {…}; write it as a block mapping to use add/remove")
    if value is not None and not _is_empty_null(value):
        if not (
            isinstance(value, MappingNode)
            or (isinstance(value, ScalarNode) and str(value.tag).endswith(":null"))
        ):
            raise UserError("nodes is not a mapping; fix it by hand first")
        row = value.start_mark.line
        line = lines[row]
        rest = line[value.end_mark.column :]
        lines[row] = line[: value.start_mark.column].rstrip(" ") + (
            rest if rest.strip() else rest.lstrip(" ")
        )
    after = _with_trailing_comments(layout.nodes_line, layout.nodes_indent, lines)
    return _Insertion(lines, after + 1, layout.nodes_indent + layout.step, [], False)


def _add_text(
    text: str, name: str, device_id: str, fields: CommentedMap, force: bool
) -> tuple[str, str, bool]:
    """The new file text, the entry's text, and whether an existing entry was replaced."""
    layout = _layout(text, name)
    existing = next((e for e in layout.entries if e.device_id == device_id), None)
    if existing is not None:
        if not force:
            raise UserError(
                f"{name}:{existing.first + 1}: nodes.{existing.key}: {device_id} is already in the inventory; "
                "use --force to replace it"
            )
        step = (existing.field_indent - existing.indent) if existing.field_indent else layout.step
        block = _render_entry(device_id, fields, existing.indent, step, layout.newline)
        lines = layout.lines[: existing.first] + block + layout.lines[existing.last + 1 :]
        return "".join(lines), "".join(block), True
    where = _insertion(layout)
    field_steps = [e.field_indent - e.indent for e in layout.entries if e.field_indent is not None]
    step = field_steps[0] if field_steps else layout.step
    block = _render_entry(device_id, fields, where.indent, step, layout.newline)
    lines = where.lines[: where.index] + where.before + block + where.lines[where.index :]
    return "".join(lines), "".join(block), False


def _declared_empty(line: str, indent: int) -> str:
    """``nodes:`` → ``nodes: {}`` (comment kept): the last node was removed on purpose, which a running
    server needs to see before it drops every node (a file without nodes otherwise looks cut off)."""
    colon = indent + len("nodes")
    if line[indent:colon] != "nodes" or line[colon : colon + 1] != ":":
        return line
    return line[: colon + 1] + " {}" + line[colon + 1 :]


def _remove_text(text: str, name: str, device_id: str) -> str:
    layout = _layout(text, name)
    for position, entry in enumerate(layout.entries):
        if entry.device_id == device_id:
            first, last = entry.first, entry.last
            if position > 0 and not layout.lines[first - 1].strip():
                first -= 1  # the blank line that separated it from the previous entry
            elif position == 0 and len(layout.entries) > 1 and not layout.lines[last + 1].strip():
                last += 1  # the first entry: drop the blank line between it and the next one instead
            lines = layout.lines[:first] + layout.lines[last + 1 :]
            if len(layout.entries) == 1 and layout.nodes_line is not None:
                lines[layout.nodes_line] = _declared_empty(lines[layout.nodes_line], layout.nodes_indent)
            return "".join(lines)
    raise UserError(f"{name}: {device_id} is not in the inventory; see `pypxe-homelab list`")


# --- files -----------------------------------------------------------------------------------------------------


def _read(path: Path) -> str:
    """The file's text with its line endings as written (refuses FIFOs, huge and non-UTF-8 files)."""
    return read_config_text(path)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise edits of files in ``directory`` (an flock on the directory itself)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_validated(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` if the whole result is a valid inventory.

    The text goes to a temp file in the same directory (fsynced, with the original's owner and mode), is
    loaded back and validated, and only then renamed over ``path``; on any failure the temp file is removed
    and the original is left as it was.
    """
    try:
        _write_validated(path, text)
    except OSError as exc:  # a full disk, a read-only folder: nothing was replaced
        raise UserError(
            f"{path}: cannot write it: {exc.strerror or exc}; the file was left as it was "
            "(free some space or check the folder's permissions)"
        ) from None


def _write_validated(path: Path, text: str) -> None:
    try:
        original = path.stat()
    except FileNotFoundError:
        original = None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if original is None:
            os.chmod(tmp, NEW_FILE_MODE)
        else:
            os.chmod(tmp, original.st_mode & 0o7777)
            with contextlib.suppress(PermissionError):
                os.chown(tmp, original.st_uid, original.st_gid)
        parse_inventory(_read(tmp), path, name=str(path), detect_host=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _device(device_id: str) -> str:
    try:
        return normalise_device_id(device_id)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def add_node(
    path: Path,
    device_id: str,
    address: str | ipaddress.IPv4Interface,
    gateway: str | ipaddress.IPv4Address | None = None,
    dns: Sequence[str | ipaddress.IPv4Address] | None = None,
    hostname: str | None = None,
    force: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> NodeEdit:
    """Add a node entry to ``path`` (created from the commented template if missing).

    An entry for the same device is an error unless ``force``, which replaces it. ``extra`` holds further node
    fields (``os``, ``install``, …). The whole resulting file must load, or nothing is written.
    """
    path = Path(path)
    device = _device(device_id)
    fields = _node_fields(
        ipaddress.IPv4Interface(str(address)),
        ipaddress.IPv4Address(str(gateway)) if gateway is not None else None,
        [ipaddress.IPv4Address(str(d)) for d in dns or ()],
        hostname,
        extra,
    )
    created = not path.exists()
    if created:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"{path.parent}: cannot create the folder: {exc.strerror}; run with sudo"
            ) from None
    with _locked(path.parent):
        text = default_config_text() if created else _read(path)
        if not created:
            parse_inventory(text, path, detect_host=False)
        new_text, block, replaced = _add_text(text, str(path), device, fields, force)
        write_validated(path, new_text)
    return NodeEdit(path, device, block, created=created, replaced=replaced)


def remove_node(path: Path, device_id: str) -> NodeEdit:
    """Remove the node entry for ``device_id`` from ``path``; an error if it is not there."""
    path = Path(path)
    device = _device(device_id)
    if not path.exists():
        raise UserError(f"{path}: the file does not exist, so {device} is not in it")
    with _locked(path.parent):
        text = _read(path)
        parse_inventory(text, path, detect_host=False)
        write_validated(path, _remove_text(text, str(path), device))
    return NodeEdit(path, device, "")
