"""Refuse an option given twice when it takes one value.

Click keeps the last value of a repeated option and drops the others without a word:
``batch stop -n A -n B`` would stop B only. Options that accept several values say so
(``multiple=True``, or comma-separated ids); for every other option a repetition is an
error, found here by walking the command line before Click parses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import click


def refuse_repeated_options(ctx: click.Context, command: click.Command,
                            args: Sequence[str]) -> None:
    """Raise ``click.UsageError`` naming the first single-value option given twice in
    ``args`` (the tokens after ``command``'s name), at any depth of subcommands."""
    seen: dict[str, str] = {}
    position = 0
    while position < len(args):
        token = args[position]
        if token == "--":
            return
        if token.startswith("-") and token != "-":
            position += _check_option(command, token, args[position + 1:], seen)
            continue
        if isinstance(command, click.Group):
            sub = command.get_command(ctx, token)
            if sub is not None:
                refuse_repeated_options(ctx, sub, args[position + 1:])
            return
        position += 1


def _check_option(command: click.Command, token: str, rest: Sequence[str],
                  seen: dict[str, str]) -> int:
    """Record ``token`` if it names a single-value option; return how many tokens it
    spans (itself and its value)."""
    option, attached = _match(command, token)
    if option is None:
        return 1
    spans = 1 if option.is_flag or option.count or attached else 1 + max(option.nargs, 1)
    if option.is_flag or option.count or option.multiple:
        return spans
    name = option.name or token
    if name in seen:
        value = _value(token, rest, attached)
        raise click.UsageError(
            f"option {'/'.join(option.opts)} was given twice ({seen[name]} and {value}); "
            "it takes one value: run the command once per value")
    seen[name] = _value(token, rest, attached)
    return spans


def _match(command: click.Command, token: str) -> tuple[click.Option | None, bool]:
    """The option ``token`` names and whether its value is attached (``--name=x``,
    ``-nx``)."""
    options = [p for p in command.params if isinstance(p, click.Option)]
    name = token.split("=", 1)[0]
    for option in options:
        if name in option.opts or name in option.secondary_opts:
            return option, "=" in token
    if not token.startswith("--") and len(token) > 2:
        for option in options:
            if token[:2] in option.opts and not option.is_flag:
                return option, True
    return None, False


def _value(token: str, rest: Sequence[str], attached: bool) -> str:
    if attached:
        return repr(token.split("=", 1)[1] if "=" in token else token[2:])
    return repr(rest[0]) if rest else "(none)"
