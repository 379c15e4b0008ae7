"""`appinfra --help` and every command's help show examples, and the examples are
commands the parser accepts (a renamed flag fails here, not in a user's terminal)."""

from __future__ import annotations

import argparse
import shlex

import pytest

from appinfra import cli


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


COMMANDS = sorted(_commands())


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    out: str = capsys.readouterr().out
    return out


def _examples(text: str) -> list[list[str]]:
    """The `appinfra ...` command lines of the help's examples section, as argv."""
    section = text.split("\nexamples:\n", 1)[1]
    lines = []
    for line in section.splitlines():
        if not line.startswith("  "):  # prose after the indented examples
            continue
        command = line.split("#", 1)[0].strip()
        for part in command.split("|"):  # `appinfra crds | kubectl ...`
            words = shlex.split(part)
            while words and "=" in words[0]:  # VAR=value appinfra ...
                words.pop(0)
            redirect = next((i for i, w in enumerate(words) if ">" in w), len(words))
            if words[:1] == ["appinfra"]:
                lines.append(words[1:redirect])
    return lines


def test_every_command_is_covered() -> None:
    assert set(COMMANDS) >= {"run", "crds", "validate", "render", "uninstall", "version"}


def test_top_level_help_shows_examples_of_several_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help([], capsys)
    assert "\nexamples:\n" in text
    shown = {argv[0] for argv in _examples(text)}
    assert {"run", "validate", "render"} <= shown
    assert "Troubleshooting" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_shows_an_example_of_itself(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help([command], capsys)
    assert "\nexamples:\n" in text, f"`appinfra {command} --help` shows no examples"
    examples = _examples(text)
    assert any(argv[:1] == [command] for argv in examples), examples


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_examples_parse(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    for argv in _examples(_help([command] if command else [], capsys)):
        parser.parse_args(argv)  # exits 2 on an unknown flag or a missing argument


def test_help_keeps_its_line_breaks(capsys: pytest.CaptureFixture[str]) -> None:
    # RawDescriptionHelpFormatter: one example per line, not re-wrapped into a paragraph
    text = _help(["render"], capsys)
    assert (
        "\n  appinfra render -f examples/ --config examples/operator-config/config.yaml\n" in text
    )
