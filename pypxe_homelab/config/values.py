"""Parsers for single inventory values (addresses, names, ports, boot locations), shared by the loader and the CLI.

Each parser returns the typed value or raises ``Invalid`` whose text is ``<what is wrong>; <how to fix>``.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)
_IFNAME = re.compile(r"^[^/\s:]{1,15}$")


class Invalid(ValueError):
    """A value that does not fit; ``str()`` is ``<what is wrong>; <how to fix>``."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}; {fix}")


def shown(value: Any) -> str:
    """A value as it should appear in a message: strings quoted, the rest as YAML would show them."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(str(value))
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return str(value)


def suggestion(word: str, choices: Iterable[str]) -> str:
    """``did you mean 'x'?`` for the closest choice, or a list of the valid ones."""
    choices = list(choices)
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "valid keys: " + ", ".join(choices)


def ipv4(value: Any, example: str = "192.168.1.1") -> ipaddress.IPv4Address:
    """A plain IPv4 address."""
    if isinstance(value, str):
        try:
            return ipaddress.IPv4Address(value.strip())
        except ValueError:
            pass
    raise Invalid(f"{shown(value)} is not an IPv4 address", f"write it like {example}")


def host_cidr(value: Any, example: str = "192.168.1.50/24") -> ipaddress.IPv4Interface:
    """An IPv4 host address with prefix length, not the network or broadcast address of its subnet."""
    text = value.strip() if isinstance(value, str) else None
    if text is not None and "/" not in text:
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            pass
        else:
            raise Invalid(f"{shown(value)} has no prefix length", f"write it like {text}/24")
    try:
        if text is None:
            raise ValueError
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise Invalid(
            f"{shown(value)} is not an IPv4 address with prefix", f"write it like {example}"
        ) from None
    net = iface.network
    if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified:
        raise Invalid(
            f"{shown(value)} cannot be a machine's address", f"use an address of your LAN like {example}"
        )
    if net.prefixlen <= 30 and iface.ip in (net.network_address, net.broadcast_address):
        which = "network" if iface.ip == net.network_address else "broadcast"
        raise Invalid(
            f"{shown(value)} is the {which} address of {net}",
            f"use a host address between {net.network_address + 1} and {net.broadcast_address - 1}",
        )
    return iface


def check_gateway(gateway: ipaddress.IPv4Address, address: ipaddress.IPv4Interface) -> None:
    """The gateway must be a different host inside the address's subnet."""
    if gateway not in address.network:
        raise Invalid(
            f"gateway {gateway} is outside {address.network} (the subnet of {address})",
            "use a gateway inside that subnet or fix the address's prefix length",
        )
    if gateway == address.ip:
        raise Invalid(f"gateway {gateway} is the machine's own address", "use your router's address")


def ipv4_list(value: Any) -> tuple[ipaddress.IPv4Address, ...]:
    """One IPv4 address, a comma list of them, or a YAML list of them."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise Invalid(
            f"{shown(value)} is not a list of IPv4 addresses", "write it like [192.168.1.1, 1.1.1.1]"
        )
    result = []
    for item in items:
        try:
            result.append(ipv4(item))
        except Invalid:
            raise Invalid(
                f"{shown(item)} is not an IPv4 address", "write it like [192.168.1.1, 1.1.1.1]"
            ) from None
    return tuple(result)


def hostname(value: Any) -> str:
    """A single DNS label: letters, digits and inner dashes, at most 63 characters."""
    if isinstance(value, str) and _LABEL.match(value):
        return value
    raise Invalid(
        f"{shown(value)} is not a valid host name",
        "use letters, digits and dashes (not at the start or end), at most 63, like node01",
    )


def port(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return int(value)
    raise Invalid(f"{shown(value)} is not a port number", "use a whole number from 1 to 65535")


def choice(value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value in choices:
        return str(value)
    options = " or ".join(choices)
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise Invalid(f"{shown(value)} is not one of {', '.join(choices)}{hint}", f"write {options}")


def relative_path(value: Any, example: str) -> str:
    """A path relative to a served root: no leading '/', no '..' component."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{shown(value)} is not a path", f"write a relative path like {example}")
    text = value.strip()
    if text.startswith("/") or ".." in text.split("/") or "\\" in text:
        raise Invalid(
            f"{shown(value)} leaves the served directory",
            f"write a path relative to it without '..', like {example}",
        )
    return text


def boot_location(value: Any, example: str) -> str:
    """An http(s) URL or a path relative to httproot."""
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value.strip())
        if parts.scheme in ("http", "https") and parts.netloc:
            return value.strip()
        raise Invalid(
            f"{shown(value)} is not an http(s) URL",
            f"use http:// or https:// with a host, or a path relative to httproot like {example}",
        )
    return relative_path(value, example)


def interface_name(value: Any) -> str:
    if isinstance(value, str) and _IFNAME.match(value):
        return value
    raise Invalid(f"{shown(value)} is not a network interface name", "write it like eth0 or enp3s0")


# crypt(5): SHA-512 is $6$[rounds=N$]salt$hash (salt 1-16, hash 86 characters); yescrypt is $y$params$salt$hash
# (hash 43 characters). Both alphabets are ./0-9A-Za-z. Ubuntu's installer and login accept both.
_B64 = "[./0-9A-Za-z]"
_SHA512_CRYPT = re.compile(rf"^\$6\$(?:rounds=[1-9][0-9]{{3,8}}\$)?{_B64}{{1,16}}\${_B64}{{86}}$")
_YESCRYPT = re.compile(rf"^\$y\${_B64}+\${_B64}{{1,86}}\${_B64}{{43}}$")
_HASH_ID = re.compile(r"^\$([0-9a-z]+)\$")
_SCHEMES = {
    "1": "an MD5 ($1$)",
    "2a": "a bcrypt ($2a$)",
    "2b": "a bcrypt ($2b$)",
    "2y": "a bcrypt ($2y$)",
    "5": "a SHA-256 ($5$)",
    "7": "a scrypt ($7$)",
    "gy": "a gost-yescrypt ($gy$)",
}
PASSWORD_FIX = (
    "give a SHA-512 hash (mkpasswd -m sha-512), a yescrypt hash (mkpasswd -m yescrypt) or plaintext"
)


def password_kind(text: str) -> str:
    """How a password value is understood: ``SHA-512 hash``, ``yescrypt hash`` or ``plaintext``."""
    if _SHA512_CRYPT.match(text):
        return "SHA-512 hash"
    if _YESCRYPT.match(text):
        return "yescrypt hash"
    return "plaintext"


def password_understood(text: str) -> str:
    """What a password value means for the installed machine, in words."""
    kind = password_kind(text)
    if kind == "plaintext":
        return "plaintext, served only as its SHA-512 hash"
    return f"a {kind}, used as given"


def password(value: Any) -> str:
    """Plaintext, or a well-formed SHA-512 (``$6$``) or yescrypt (``$y$``) crypt hash.

    Anything else that looks like a crypt hash (``$<id>$…``) is refused: taken as plaintext it would be hashed
    again and the console password would become the hash string.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise Invalid(f"{shown(value)} is a number, not text", f"put it in quotes: '{value}'")
    if not isinstance(value, str):
        raise Invalid(f"{shown(value)} is not text", "write the password or its hash in quotes")
    if not value:
        raise Invalid("an empty password", PASSWORD_FIX)
    if password_kind(value) != "plaintext":
        return value
    scheme = _HASH_ID.match(value)
    if scheme:
        ident = scheme.group(1)
        if ident in ("6", "y"):
            name = "SHA-512" if ident == "6" else "yescrypt"
            raise Invalid(
                f"this {name} hash is malformed (wrong salt or hash length or characters)", PASSWORD_FIX
            )
        what = _SCHEMES.get(ident, f"a ${ident}$")
        raise Invalid(f"{what} hash is not accepted", PASSWORD_FIX)
    return value


_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def user_name(value: Any) -> str:
    """A system user name as useradd accepts it (lower case, at most 32 characters)."""
    if isinstance(value, str) and _USER.match(value):
        return value
    raise Invalid(
        f"{shown(value)} is not a user name",
        "use lower-case letters, digits, '-' and '_' (at most 32), like pypxe-homelab",
    )
