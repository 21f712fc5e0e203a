"""The one Jinja environment for every text a machine receives (templates in boot/templates/)."""

from __future__ import annotations

from typing import Any

import jinja2

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("pypxe_homelab.boot", "templates"),
    autoescape=False,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


def render_template(name: str, **context: Any) -> str:
    """Render ``boot/templates/<name>`` with ``context``; a missing variable is an error, never blank."""
    return _ENV.get_template(name).render(**context)
