"""config.editor: node edits keep every other byte, are validated as a whole, and are atomic."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pypxe_homelab.config import editor
from pypxe_homelab.config.editor import add_node, remove_node
from pypxe_homelab.config.loader import default_config_text, load_inventory
from pypxe_homelab.errors import ConfigError, UserError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "config"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def commented(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    shutil.copy(FIXTURES / "commented.yaml", path)
    return path


def add(
    path: Path, device: str = "52:54:00:a0:00:09", address: str = "192.168.1.59/24", **kw
) -> editor.NodeEdit:
    return add_node(path, device, address, **kw)


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize(
    "source",
    [FIXTURES / "commented.yaml", FIXTURES / "issue_example.yaml", REPO / "config.example.yaml"],
    ids=["commented", "issue", "example"],
)
def test_add_then_remove_is_byte_identical(tmp_path: Path, source: Path) -> None:
    path = tmp_path / "config.yaml"
    shutil.copy(source, path)
    before = path.read_bytes()
    edit = add(
        path, gateway="192.168.1.1", dns=["1.1.1.1", "9.9.9.9"], hostname="new", extra={"os": "ubuntu-24.04"}
    )
    after = path.read_bytes()
    assert after != before and before.splitlines()[0] == after.splitlines()[0]
    node = load_inventory(path, detect_host=False).nodes["01-52-54-00-a0-00-09"]
    assert str(node.address) == "192.168.1.59/24" and node.hostname == "new" and node.os == "ubuntu-24.04"
    assert [str(d) for d in node.dns] == ["1.1.1.1", "9.9.9.9"]
    assert "01-52-54-00-a0-00-09:" in edit.text and not edit.created and not edit.replaced
    remove_node(path, "01-52-54-00-a0-00-09")
    assert path.read_bytes() == before


def test_new_entry_follows_the_file_style(commented: Path) -> None:
    text_before = commented.read_text()
    add(commented, gateway="192.168.1.1")
    text = commented.read_text()
    assert text.startswith(
        text_before.split("# trailing comment")[0]
    )  # appended after the last node's comment
    assert (
        "        # dns: [9.9.9.9]\n"
        "\n"  # nodes here are separated by a blank line
        "    01-52-54-00-a0-00-09:\n"
        "        address: 192.168.1.59/24\n"
        "        gateway: 192.168.1.1\n"
        "\n"
        "# trailing comment, not part of the last node\n"
    ) in text
    assert "'nas'" in text and '"192.168.1.1"     # quoted on purpose' in text


def test_remove_a_middle_node_keeps_the_rest(commented: Path) -> None:
    remove_node(commented, "01-52-54-00-a0-00-01")
    text = commented.read_text()
    assert "01-52-54-00-a0-00-01" not in text and "late-commands" not in text
    assert "    # The NAS\n    01-52-54-00-a0-00-02:    # the pi-hole\n" in text
    assert text.endswith("        # dns: [9.9.9.9]\n\n# trailing comment, not part of the last node\n")
    assert set(load_inventory(commented, detect_host=False).nodes) == {"01-52-54-00-a0-00-02"}


def test_remove_last_node_leaves_empty_nodes_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("nodes:\n  # machines\n  01-52-54-00-a0-00-01:\n    address: 10.0.0.5/24\n# end\n")
    remove_node(path, "52-54-00-a0-00-01")
    assert path.read_text() == "nodes: {}\n  # machines\n# end\n"
    assert load_inventory(path, detect_host=False).nodes_declared_empty
    add_node(path, "01-52-54-00-a0-00-01", "10.0.0.5/24")
    assert (
        path.read_text() == "nodes:\n  # machines\n  01-52-54-00-a0-00-01:\n    address: 10.0.0.5/24\n# end\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nodes: {}   # none yet\n", "nodes:   # none yet\n  7092246e:\n"),
        ("nodes: ~\n", "nodes:\n  7092246e:\n"),
        (
            "server:\n    http_port: 8080\n",
            "server:\n    http_port: 8080\n\nnodes:\n    7092246e:\n        address: 10.0.0.5/24\n",
        ),
        ("", "nodes:\n  7092246e:\n"),
        (
            "server:\r\n  http_port: 8080\r\nnodes:\r\n",
            "nodes:\r\n  7092246e:\r\n    address: 10.0.0.5/24\r\n",
        ),
    ],
)
def test_add_to_empty_or_missing_nodes(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(text.encode())
    add_node(path, "7092246E", "10.0.0.5/24")
    assert expected in path.read_bytes().decode()
    assert set(load_inventory(path, detect_host=False).nodes) == {"7092246e"}


def test_pi_serial_of_digits_is_quoted(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    add_node(path, "12345678", "10.0.0.5/24")
    assert "  '12345678':\n" in path.read_text()
    assert "12345678" in load_inventory(path, detect_host=False).nodes


def test_add_creates_the_file_from_the_template(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "config.yaml"
    edit = add_node(path, "01-52-54-00-a0-00-09", "10.0.0.9/24")
    assert edit.created
    text = path.read_text()
    assert text.startswith(default_config_text())
    assert text.endswith("  01-52-54-00-a0-00-09:\n    address: 10.0.0.9/24\n")
    assert "# server:\n" in text and "\nnodes:\n" in text
    assert (path.stat().st_mode & 0o777) == editor.NEW_FILE_MODE
    remove_node(path, "01-52-54-00-a0-00-09")  # the last node: nodes: {} says it was on purpose
    assert path.read_text() == default_config_text().replace("\nnodes:\n", "\nnodes: {}\n")


def test_existing_node_needs_force(commented: Path) -> None:
    before = commented.read_bytes()
    with pytest.raises(UserError, match=r"config.yaml:16: nodes.01-52-54-00-a0-00-01: .* use --force"):
        add(commented, "01-52-54-00-a0-00-01", "192.168.1.70/24")
    assert commented.read_bytes() == before
    edit = add(commented, "01-52-54-00-a0-00-01", "192.168.1.70/24", force=True)
    assert edit.replaced
    text = commented.read_text()
    assert (
        "    # The NAS\n    01-52-54-00-a0-00-01:\n        address: 192.168.1.70/24\n\n    01-52-54-00-a0-00-02:"
        in text
    )
    assert "late-commands" not in text


def test_invalid_result_is_not_written(commented: Path) -> None:
    before = commented.read_bytes()
    with pytest.raises(ConfigError, match="192.168.1.50 is already the address of"):
        add(commented, address="192.168.1.50/24")
    assert commented.read_bytes() == before
    assert leftovers(commented) == []


def test_broken_file_is_refused_with_its_own_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  http_port: 0\nnodes:\n")
    with pytest.raises(ConfigError, match=r"c.yaml:2: server.http_port"):
        add_node(path, "01-52-54-00-a0-00-09", "10.0.0.9/24")
    with pytest.raises(ConfigError):
        remove_node(path, "01-52-54-00-a0-00-09")
    assert path.read_text() == "server:\n  http_port: 0\nnodes:\n"


def test_remove_unknown_node(commented: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not in the inventory"):
        remove_node(commented, "01-52-54-00-a0-00-77")
    with pytest.raises(UserError, match="does not exist"):
        remove_node(tmp_path / "none.yaml", "01-52-54-00-a0-00-77")
    with pytest.raises(UserError, match="is not a device id"):
        remove_node(commented, "nope")


def test_flow_style_nodes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("nodes: {01-52-54-00-a0-00-01: {address: 10.0.0.5/24}}\n")
    with pytest.raises(UserError, match="flow style"):
        add_node(path, "01-52-54-00-a0-00-09", "10.0.0.9/24")


def test_interrupted_write_leaves_original_and_no_temp(
    commented: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = commented.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError(5, "simulated crash before rename")

    monkeypatch.setattr(editor.os, "replace", crash)
    with pytest.raises(
        UserError, match="cannot write it: simulated crash before rename; the file was left as it was"
    ):
        add(commented)
    assert commented.read_bytes() == before
    assert leftovers(commented) == []


def test_owner_and_mode_are_kept(commented: Path) -> None:
    os.chmod(commented, 0o600)
    add(commented)
    assert (commented.stat().st_mode & 0o777) == 0o600
    assert commented.stat().st_uid == os.getuid()
