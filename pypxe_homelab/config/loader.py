"""Read config.yaml into an ``Inventory``, reporting every problem at once with file and line.

YAML is read with ruamel.yaml's round-trip loader: it records the line of every key and value, and the same
library is what ``config.editor`` uses, so both agree on how the file is read. Each problem becomes one line
``<file>:<line>: <dotted.key>: <what is wrong>; <how to fix>`` inside a ``ConfigError``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, SequenceNode
from ruamel.yaml.nodes import Node as YamlNode

from pypxe_homelab.config import hostnet, ssh_keys
from pypxe_homelab.config import values as V
from pypxe_homelab.config.model import (
    DEFAULT_HTTP_BOOT_LOADERS,
    DEFAULT_LOADERS,
    DEFAULT_SECURE_BOOT_LOADERS,
    BootSpec,
    Defaults,
    Inventory,
    Node,
    Paths,
    ServerSettings,
)
from pypxe_homelab.errors import ConfigError
from pypxe_homelab.identity import normalise_device_id

UNKNOWN_POLICIES = ("menu", "ignore")
UEFI_MODES = ("binl", "direct", "http")
INSTALL_POLICIES = ("once", "always", "never")
MAX_MENU_TIMEOUT = 3600
EMBEDDED_NAME = "<embedded default>"
# Bounds that keep a broken or hostile file from stalling the server (docs/config-reference.md, "Limits").
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_YAML_VALUES = 250_000  # values the document holds once every alias is expanded
MAX_YAML_DEPTH = 40  # nesting of mappings and lists, aliases expanded


class _Reported(Exception):
    """The value's problems were already recorded item by item."""


@dataclass
class _Report:
    name: str
    problems: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line: int | None, key: str, message: str) -> None:
        where = f"{self.name}:{line}" if line else self.name
        self.problems.append((line or 0, f"{where}: {key}: {message}"))

    def lines(self) -> list[str]:
        return [text for _line, text in sorted(self.problems, key=lambda p: p[0])]


def _line_of(container: Any, key: Any, *, value: bool) -> int | None:
    """1-based line of a mapping key (or its scalar value), or of a sequence item."""
    lc = getattr(container, "lc", None)
    if lc is None:
        return None
    try:
        if isinstance(container, list):
            return lc.item(key)[0] + 1
        if value and not isinstance(container[key], (dict, list)) and container[key] is not None:
            return lc.value(key)[0] + 1
        return lc.key(key)[0] + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class _At:
    """A value in the document: its dotted key, its line, and where its problems go."""

    report: _Report
    key: str
    line: int | None
    value: Any
    base_dir: Path

    def child(self, mapping: Mapping[Any, Any], key: Any) -> _At:
        line = _line_of(mapping, key, value=True) or self.line
        return _At(
            self.report, f"{self.key}.{key}" if self.key else str(key), line, mapping[key], self.base_dir
        )

    def item(self, index: int) -> _At:
        line = _line_of(self.value, index, value=True) or self.line
        return _At(self.report, f"{self.key}[{index}]", line, self.value[index], self.base_dir)

    def error(self, message: str) -> None:
        self.report.add(self.line, self.key, message)


Parser = Callable[[_At], Any]


# --- scalar fields -------------------------------------------------------------------------------------------


def _text(at: _At) -> str:
    if isinstance(at.value, str):
        return str(at.value)
    if isinstance(at.value, (int, float)) and not isinstance(at.value, bool):
        raise V.Invalid(f"{V.shown(at.value)} is a number, not text", f"put it in quotes: '{at.value}'")
    raise V.Invalid(f"{V.shown(at.value)} is not text", "write a single line of text")


def _bool(at: _At) -> bool:
    if isinstance(at.value, bool):
        return at.value
    raise V.Invalid(f"{V.shown(at.value)} is not true or false", "write true or false")


def _menu_timeout(at: _At) -> int:
    value = at.value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MENU_TIMEOUT:
        return int(value)
    raise V.Invalid(
        f"{V.shown(value)} is not a number of seconds", f"use a whole number from 0 to {MAX_MENU_TIMEOUT}"
    )


def _whole(low: int, high: int, what: str) -> Parser:
    def parse(at: _At) -> int:
        value = at.value
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return int(value)
        raise V.Invalid(f"{V.shown(value)} is not {what}", f"use a whole number from {low} to {high}")

    return parse


def _choice(choices: tuple[str, ...]) -> Parser:
    return lambda at: V.choice(at.value, choices)


def _plain(value: Any) -> Any:
    """ruamel's round-trip containers and scalars as plain Python values."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def _mapping(at: _At) -> dict[str, Any]:
    if isinstance(at.value, dict):
        return _plain(at.value)
    raise V.Invalid(f"{V.shown(at.value)} is not a mapping", "write it as indented key: value lines")


def _each(
    at: _At, parse_item: Callable[[Any], Any], *, comma: bool = False, what: str = "a list"
) -> tuple[Any, ...]:
    """Parse a single value or a list of values; problems are reported per item with the item's line."""
    value = at.value
    if isinstance(value, list):
        results, bad = [], False
        for index in range(len(value)):
            sub = at.item(index)
            try:
                results.append(parse_item(sub.value))
            except V.Invalid as exc:
                sub.error(str(exc))
                bad = True
        if bad:
            raise _Reported
        return tuple(results)
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")] if comma else [value]
        return tuple(parse_item(p) for p in parts)
    raise V.Invalid(f"{V.shown(value)} is not {what}", "write one value or a list like [a, b]")


def _nonempty_text(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise V.Invalid(f"{V.shown(value)} is not text", "write a non-empty string")


def _interfaces(at: _At) -> tuple[str, ...]:
    return _each(at, V.interface_name, what="an interface name")


def _dns(at: _At) -> tuple[ipaddress.IPv4Address, ...]:
    return _each(at, lambda v: V.ipv4(v, "192.168.1.1"), comma=True, what="a list of IPv4 addresses")


def _public_key(value: Any) -> str:
    if not isinstance(value, str):
        raise V.Invalid(f"{V.shown(value)} is not a public key line", "paste one line of a .pub file")
    try:
        return ssh_keys.parse_public_key(value)
    except ValueError as exc:
        message = str(exc)
        if ";" not in message:
            message += "; paste one line of a .pub file, like ssh-ed25519 AAAA… you@host"
        raise V.Invalid(message.split(";", 1)[0], message.split(";", 1)[1].strip()) from None


def _ssh_keys(at: _At) -> tuple[str, ...]:
    return _each(at, _public_key, what="a list of public key lines")


def _local_path(at: _At) -> Path:
    text = _nonempty_text(at.value)
    path = Path(text).expanduser()
    return path if path.is_absolute() else at.base_dir / path


def _keys_file(at: _At) -> Path:
    path = _local_path(at)
    if path.exists() and not path.is_file():
        raise V.Invalid(f"{path} is not a regular file", "name a file of public key lines")
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise V.Invalid(f"cannot read {path}: {exc.strerror}", "fix the path or remove the key") from None
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                _public_key(line)
            except V.Invalid as exc:
                at.error(f"line {number} of {path}: {exc}")
    return path


def _loader_path(value: Any) -> str:
    if value == "":
        return ""
    return V.relative_path(value, "efi64/syslinux.efi")


def _loaders(at: _At) -> dict[str, str]:
    given = _section(at, {name: lambda a: _loader_path(a.value) for name in DEFAULT_LOADERS})[0]
    return {**DEFAULT_LOADERS, **given}


def _secure_boot_loaders(at: _At) -> dict[str, str]:
    fields = {name: lambda a: _loader_path(a.value) for name in DEFAULT_SECURE_BOOT_LOADERS}
    return {**DEFAULT_SECURE_BOOT_LOADERS, **_section(at, fields)[0]}


def _seconds(low: float, high: float) -> Parser:
    def parse(at: _At) -> float:
        value = at.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise V.Invalid(
                f"{V.shown(value)} is not a number of seconds", f"use a number from {low:g} to {high:g}"
            )
        return float(value)

    return parse


def _http_boot_loaders(at: _At) -> dict[str, str]:
    fields = {name: lambda a: _loader_path(a.value) for name in DEFAULT_HTTP_BOOT_LOADERS}
    return {**DEFAULT_HTTP_BOOT_LOADERS, **_section(at, fields)[0]}


def _root(at: _At) -> Path:
    return _local_path(at)


def _boot(at: _At) -> BootSpec:
    fields = {
        "kernel": lambda a: V.boot_location(a.value, "boot/linux"),
        "initrd": lambda a: _each(a, lambda v: V.boot_location(v, "boot/initrd.gz"), what="a path or URL"),
        "cmdline": _text,
    }
    found, _lines = _section(at, fields)
    if "kernel" not in found:
        if isinstance(at.value, dict) and "kernel" not in at.value:
            at.error("has no kernel; add kernel: boot/linux (a path under httproot or an http(s) URL)")
        raise _Reported
    return BootSpec(**found)


SERVER_FIELDS: dict[str, Parser] = {
    "interfaces": _interfaces,
    "address": lambda at: V.ipv4(at.value, "192.168.1.2"),
    "http_port": lambda at: V.port(at.value),
    "tftp_port": lambda at: V.port(at.value),
    "tftp_max_transfers": _whole(1, 65536, "a number of transfers"),
    "tftp_max_per_client": _whole(1, 1024, "a number of transfers"),
    "tftp_windowsize": _whole(1, 256, "a window size in blocks"),
    "proxy_dhcp": _bool,
    "unknown": _choice(UNKNOWN_POLICIES),
    "uefi_mode": _choice(UEFI_MODES),
    "pxe_vendor_classes": lambda at: _each(at, _nonempty_text, what="a list of vendor class prefixes"),
    "menu_timeout": _menu_timeout,
    "loaders": _loaders,
    "user": lambda at: V.user_name(at.value),
    "http_listen": lambda at: _each(
        at, lambda v: V.ipv4(v, "0.0.0.0"), comma=True, what="a list of IPv4 addresses"
    ),
    "secure_boot_loaders": _secure_boot_loaders,
    "http_boot_loaders": _http_boot_loaders,
    "diagnose_after": _seconds(5, 3600),
}
PATHS_FIELDS: dict[str, Parser] = {"root": _root}
DEFAULTS_FIELDS: dict[str, Parser] = {
    "gateway": lambda at: V.ipv4(at.value, "192.168.1.1"),
    "dns": _dns,
    "os": lambda at: _nonempty_text(at.value),
    "pi_os": lambda at: _nonempty_text(at.value),
    "install": _choice(INSTALL_POLICIES),
    "password": lambda at: V.password(at.value),
    "ssh_authorized_keys": _ssh_keys,
    "ssh_authorized_keys_file": _keys_file,
    "storage": _mapping,
    "autoinstall": _mapping,
    "cmdline": _text,
    "uefi_mode": _choice(UEFI_MODES),
    "secure_boot": _bool,
    "dhcp_reply_delay": _seconds(0, 10),
}
NODE_FIELDS: dict[str, Parser] = {
    "address": lambda at: V.host_cidr(at.value),
    "hostname": lambda at: V.hostname(at.value),
    "gateway": lambda at: V.ipv4(at.value, "192.168.1.1"),
    "dns": _dns,
    "os": lambda at: _nonempty_text(at.value),
    "install": _choice(INSTALL_POLICIES),
    "uefi_mode": _choice(UEFI_MODES),
    "password": lambda at: V.password(at.value),
    "ssh_authorized_keys": _ssh_keys,
    "autoinstall": _mapping,
    "cmdline": _text,
    "secure_boot": _bool,
    "dhcp_reply_delay": _seconds(0, 10),
    "boot": _boot,
}


def _section(at: _At, fields: Mapping[str, Parser]) -> tuple[dict[str, Any], dict[str, int | None]]:
    """Parse a mapping whose keys are ``fields``; returns the parsed values and each key's line."""
    mapping = at.value
    if mapping is None:
        return {}, {}
    if not isinstance(mapping, dict):
        at.error(f"{V.shown(mapping)} is not a mapping; write its settings as indented key: value lines")
        return {}, {}
    found: dict[str, Any] = {}
    lines: dict[str, int | None] = {}
    for key in mapping:
        sub = at.child(mapping, key)
        if key not in fields:
            _At(at.report, sub.key, _line_of(mapping, key, value=False), None, at.base_dir).error(
                f"unknown key; {V.suggestion(str(key), fields)}"
            )
            continue
        if sub.value is None:
            continue  # an empty value means the default
        try:
            found[key] = fields[key](sub)
            lines[key] = sub.line
        except V.Invalid as exc:
            sub.error(str(exc))
        except _Reported:
            pass
    return found, lines


# --- nodes and cross-checks ------------------------------------------------------------------------------------


def _device_id(key_at: _At, key: Any) -> str | None:
    if not isinstance(key, str):
        key_at.error(
            "a device id written only with digits is read as a number; put it in quotes like '12345678'"
        )
        return None
    try:
        return normalise_device_id(key)
    except ValueError as exc:
        key_at.error(str(exc).replace(" is not a device id: ", " is not a device id; ", 1))
        return None


def _nodes(
    at: _At, defaults: Defaults, defaults_lines: dict[str, int | None], server: ServerSettings
) -> dict[str, Node]:
    mapping = at.value
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        at.error(f"{V.shown(mapping)} is not a mapping; list machines as '<device id>:' keys under nodes")
        return {}
    nodes: dict[str, Node] = {}
    where: dict[str, tuple[str, int | None]] = {}
    owners: dict[ipaddress.IPv4Address, tuple[str, int | None]] = {}
    names: dict[str, tuple[str, int | None]] = {}
    for key in mapping:
        key_line = _line_of(mapping, key, value=False)
        node_at = _At(at.report, f"nodes.{key}", key_line, mapping[key], at.base_dir)
        device_id = _device_id(node_at, key)
        found, lines = _section(node_at, NODE_FIELDS)
        if device_id is None:
            continue
        if device_id in where:
            other, other_line = where[device_id]
            node_at.error(f"is the same device as {other!r} (line {other_line}); keep only one of them")
            continue
        where[device_id] = (str(key), key_line)
        node = Node(device_id=device_id, line=key_line, **found)
        nodes[device_id] = node

        address = node.address
        if address is None:
            continue
        address_at = replace(node_at, key=f"nodes.{key}.address", line=lines.get("address"))
        if node.gateway is not None:
            try:
                V.check_gateway(node.gateway, address)
            except V.Invalid as exc:
                replace(node_at, key=f"nodes.{key}.gateway", line=lines.get("gateway")).error(str(exc))
        elif (
            defaults.gateway is not None
            and defaults_lines.get("gateway")
            and defaults.gateway not in address.network
        ):
            address_at.error(
                f"the default gateway {defaults.gateway} (line {defaults_lines['gateway']}) is outside "
                f"{address.network}; set nodes.{key}.gateway or fix the address"
            )
        if address.ip == server.address:
            address_at.error(
                f"{address.ip} is the server's own address (server.address); give the machine another one"
            )
        if address.ip in owners:
            other, other_line = owners[address.ip]
            address_at.error(
                f"{address.ip} is already the address of {other} (line {other_line}); give each machine its own address"
            )
        else:
            owners[address.ip] = (str(key), key_line)
        if node.hostname:
            lowered = node.hostname.lower()
            if lowered in names:
                other, other_line = names[lowered]
                replace(node_at, key=f"nodes.{key}.hostname", line=lines.get("hostname")).error(
                    f"{node.hostname!r} is already the host name of {other} (line {other_line}); give each machine its own name"
                )
            else:
                names[lowered] = (str(key), key_line)
    return nodes


TOP_FIELDS = ("server", "paths", "defaults", "nodes")


def _key_without_colon(text: str, line: int) -> int | None:
    """0-based line where a plain scalar ends up read as a key on ``line`` began, when that is an earlier line:
    ``http_port 8080`` (no ':') followed by ``unknown: menu`` reads as the key ``http_port 8080 unknown``,
    and the scanner only objects at the ':' of the later line."""
    lines = text.splitlines()
    if not 0 < line < len(lines):
        return None
    first = None
    row = line - 1
    while row >= 0:
        body = lines[row].strip()
        if not body or body.startswith("#") or ":" in body or body.startswith(("-", "[", "{")):
            break
        first = row
        row -= 1
    return first


def _yaml_error(name: str, exc: YAMLError, text: str = "") -> str:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = (exc.problem or exc.context or "invalid YAML").strip().splitlines()[0]
        if "mapping values are not allowed" in problem and mark is not None:
            start = _key_without_colon(text, mark.line)
            if start is not None:
                shown = text.splitlines()[start].strip()
                return f"{name}:{start + 1}: {shown!r} has no ':' after its key; write it as key: value"
        if (
            "while parsing a flow" in (exc.context or "")
            and exc.context_mark is not None
            and mark is not None
        ):
            opened = exc.context_mark
            if opened.line < mark.line:
                return (
                    f"{name}:{opened.line + 1}:{opened.column + 1}: this bracket is not closed before line "
                    f"{mark.line + 1}; close it on its own line or write the list as indented - items"
                )
        if "end of stream" in problem and exc.context_mark is not None:
            mark = exc.context_mark
            what = (exc.context or "").replace("while scanning ", "").replace("while parsing ", "")
            return f"{name}:{mark.line + 1}:{mark.column + 1}: {what or 'this'} is never closed; close the quote or bracket"
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        if "duplicate key" in problem:
            return f"{where}: {problem}; keep only one of them"
        if "'\\t'" in problem:
            return f"{where}: a tab character; indent with spaces, never tabs"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return f"{where}: {problem}{context}; fix the YAML syntax here (indentation, a missing ':' or an unclosed quote)"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
    return f"{name}: {first}; fix the YAML syntax"


def _children(node: YamlNode) -> list[YamlNode]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _shape_problem(root: YamlNode, name: str) -> str | None:
    """Why the composed document is too big or too deep once aliases are expanded (an "alias bomb"), or None.

    Sizes and heights are counted per node object, so the walk is linear in the file even when aliases
    would expand it exponentially.
    """
    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[YamlNode, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        line = node.start_mark.line + 1
        if finished:
            on_path.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            heights[key] = 1 + max((heights[id(c)] for c in children), default=0)
            if sizes[key] > MAX_YAML_VALUES:
                return (
                    f"{name}:{line}: aliases here expand to more than {MAX_YAML_VALUES} values; "
                    "write the values out instead of repeating aliases"
                )
            if heights[key] > MAX_YAML_DEPTH:
                return (
                    f"{name}:{line}: values are nested more than {MAX_YAML_DEPTH} levels deep; "
                    "flatten the mappings and lists"
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            return f"{name}:{line}: an alias refers to the value that contains it; remove the alias"
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    return None


# Brackets outside quotes and comments: a rough but linear measure of flow nesting, taken before the YAML
# scanner runs (its cost grows with the square of the flow depth: 100,000 "[" would stall it for hours).
_FLOW_PARTS = re.compile(
    r"""[\[\]{}]|"(?:\\.|[^"\\])*"|'(?:''|[^'])*'|(?:^|(?<=\s))#[^\n]*|\n""", re.MULTILINE
)


def _flow_depth_problem(text: str, name: str) -> str | None:
    depth, line = 0, 1
    for match in _FLOW_PARTS.finditer(text):
        part = match.group()
        if part == "\n":
            line += 1
        elif part in "[{":
            depth += 1
            if depth > MAX_YAML_DEPTH:
                return (
                    f"{name}:{line}: values are nested more than {MAX_YAML_DEPTH} levels deep; "
                    "flatten the mappings and lists"
                )
        elif part in "]}":
            depth = max(0, depth - 1)
        else:
            line += part.count("\n")
    return None


def read_yaml(text: str, name: str) -> Any:
    """Parse ``text`` with ruamel's round-trip loader; a syntax error, an alias bomb or a too-deep document
    becomes a one-line ConfigError."""
    problem = _flow_depth_problem(text, name)
    if problem:
        raise ConfigError([problem])
    yaml = YAML(typ="rt")
    try:
        node = yaml.compose(text)
        if node is None:
            return None
        problem = _shape_problem(node, name)
        if problem:
            raise ConfigError([problem])
        return yaml.constructor.construct_document(node)
    except YAMLError as exc:
        raise ConfigError([_yaml_error(name, exc, text)]) from None
    except RecursionError:
        raise ConfigError(
            [f"{name}: mappings and lists are nested too deeply to read; flatten them"]
        ) from None


def parse_inventory(
    text: str, source: Path | None, *, name: str | None = None, detect_host: bool = True
) -> Inventory:
    """Build the Inventory from config text; ``source`` is recorded and anchors relative paths.

    Unset ``defaults.gateway``/``defaults.dns`` are filled from the host when ``detect_host``.
    """
    name = name or (str(source) if source else EMBEDDED_NAME)
    document = read_yaml(text, name)
    report = _Report(name)
    base_dir = source.parent if source else Path.cwd()
    root = _At(report, "", 1, document, base_dir)
    if document is not None and not isinstance(document, dict):
        report.add(
            1, "(top level)", "the file is not a mapping; start with keys like server:, defaults:, nodes:"
        )
        raise ConfigError(report.lines())
    document = document or {}
    for key in document:
        if key not in TOP_FIELDS:
            report.add(
                _line_of(document, key, value=False),
                str(key),
                f"unknown key; {V.suggestion(str(key), TOP_FIELDS)}",
            )

    def section(key: str, fields: Mapping[str, Parser]) -> tuple[dict[str, Any], dict[str, int | None]]:
        if key not in document:
            return {}, {}
        return _section(root.child(document, key), fields)

    server_values, _ = section("server", SERVER_FIELDS)
    paths_values, _ = section("paths", PATHS_FIELDS)
    defaults_values, defaults_lines = section("defaults", DEFAULTS_FIELDS)
    server = ServerSettings(**server_values)
    defaults = Defaults(**defaults_values)
    nodes = (
        _nodes(root.child(document, "nodes"), defaults, defaults_lines, server) if "nodes" in document else {}
    )
    if report.problems:
        raise ConfigError(report.lines())
    if detect_host:
        defaults = fill_from_host(defaults)
    written_nodes = document.get("nodes")
    return Inventory(
        server=server,
        paths=Paths(**paths_values),
        defaults=defaults,
        nodes=nodes,
        source=source,
        nodes_declared_empty=isinstance(written_nodes, dict) and not written_nodes,
    )


def fill_from_host(defaults: Defaults) -> Defaults:
    """Unset gateway and DNS servers taken from this host (default route, upstream resolvers)."""
    gateway = defaults.gateway or hostnet.default_gateway()
    dns = defaults.dns or tuple(hostnet.upstream_dns())
    return replace(defaults, gateway=gateway, dns=dns)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_config_text(path: Path) -> str:
    """The text of ``path``; ConfigError (one line) when it is missing, not a regular file (a FIFO would block
    forever), larger than MAX_CONFIG_BYTES, unreadable or not UTF-8. Never blocks on a special file."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(
            [
                f"{path}: the file does not exist; create it (see config.example.yaml) or use `pypxe-homelab add`"
            ]
        ) from None
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read it: {exc.strerror}; check the path and its permissions"]
        ) from None

    def check(info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                [
                    f"{path}: is {_kind(info.st_mode)}, not a regular file; point the config path at a YAML file"
                ]
            )
        if info.st_size > MAX_CONFIG_BYTES:
            too_big(info.st_size)

    def too_big(size: int) -> None:
        raise ConfigError(
            [
                f"{path}: is {size / 2**20:.1f} MiB, more than the {MAX_CONFIG_BYTES // 2**20} MiB "
                "a config file may have; is it the right file?"
            ]
        )

    check(info)
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO since the stat, opening it still returns at once
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as handle:
            check(os.fstat(handle.fileno()))
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read it: {exc.strerror}; check the path and its permissions"]
        ) from None
    if len(data) > MAX_CONFIG_BYTES:  # it grew since the stat
        too_big(len(data))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: byte {exc.start} is not UTF-8; save the file as UTF-8 text"]) from None


def load_inventory(path: Path, *, detect_host: bool = True) -> Inventory:
    """Load and validate ``path``; raises ConfigError listing every problem (one line each)."""
    return parse_inventory(read_config_text(path), path, detect_host=detect_host)


def default_config_text() -> str:
    """The embedded default config: every setting commented out and no nodes (also the template for a new file)."""
    return resources.files("pypxe_homelab.config").joinpath("default.yaml").read_text(encoding="utf-8")


def default_inventory(*, detect_host: bool = True) -> Inventory:
    """The inventory used when there is no config file: no nodes, every setting at its default."""
    return parse_inventory(default_config_text(), None, name=EMBEDDED_NAME, detect_host=detect_host)


def load_or_default(path: Path, *, detect_host: bool = True) -> tuple[Inventory, bool]:
    """Load ``path``, or the embedded default when it does not exist (the bool is True then).

    A file that exists but is invalid raises ConfigError; it never falls back.
    """
    if not path.exists() and not path.is_symlink():
        return default_inventory(detect_host=detect_host), True
    return load_inventory(path, detect_host=detect_host), False
