"""A config file can be huge, a FIFO, an alias bomb or nested thousands deep: each is refused in one line, fast."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pypxe_homelab.cli import main
from pypxe_homelab.config.loader import MAX_CONFIG_BYTES, load_inventory, parse_inventory
from pypxe_homelab.errors import ConfigError


def bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]")
    return "defaults:\n  autoinstall:\n" + "".join(f"    {line}\n" for line in lines)


def one_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_inventory(path, detect_host=False)
    assert len(info.value.errors) == 1 and "\n" not in info.value.errors[0]
    return info.value.errors[0]


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    os.mkfifo(path)
    assert "is a named pipe (FIFO), not a regular file" in one_error(path)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").mkdir()
    assert "is a directory" in one_error(tmp_path / "config.yaml")


def test_a_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# filler\n" * (MAX_CONFIG_BYTES // 9 + 10))
    started = time.monotonic()
    assert "more than the 4 MiB a config file may have" in one_error(path)
    assert time.monotonic() - started < 1


@pytest.mark.timeout(30)
def test_an_alias_bomb_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(bomb(7))  # 9**7 values once expanded
    started = time.monotonic()
    message = one_error(path)
    assert time.monotonic() - started < 2
    assert message.startswith(f"{path}:") and "aliases here expand to more than" in message


def test_aliases_of_normal_size_still_work() -> None:
    inventory = parse_inventory(bomb(3), None, detect_host=False)
    assert len(inventory.defaults.autoinstall["a2"]) == 9


@pytest.mark.timeout(30)
def test_validate_is_fast_on_a_nine_level_bomb(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(bomb(9))
    started = time.monotonic()
    result = CliRunner().invoke(main, ["--config", str(path), "validate"])
    assert time.monotonic() - started < 5
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.count("\n") == 1 and "aliases here expand" in result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 5000, "nested more than 40 levels deep"),
        ("x:\n" + "".join(" " * i + "-\n" for i in range(2, 4000, 2)), "nested"),
        ("x: " + "[" * 60 + "]" * 60 + "\n", "nested more than 40 levels deep"),
        ("defaults:\n  autoinstall: &a\n    loop: *a\n", "refers to the value that contains it"),
    ],
    ids=["5000-deep-flow", "2000-deep-block", "60-deep", "recursive-alias"],
)
def test_deep_or_recursive_documents_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert expected in one_error(path)
    result = CliRunner().invoke(main, ["--config", str(path), "validate"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.count("\n") == 1 and expected in result.output
