"""Policies, limits and socket options from TOML or JSON files: :func:`load_config`.

A configuration file has up to three sections, each optional (a missing one keeps its
defaults), each holding the fields of one value: ``policy`` (:class:`Policy`), ``limits``
(:class:`Limits`) and ``socket_options`` (:class:`SocketOptions`)::

    [policy]
    interval = 0.5
    timeout = 2.0

    [limits]
    max_message_size = 1048576

    [socket_options.keepalive]
    idle = 10
    interval = 5
    count = 3

The same in JSON is ``{"policy": {"interval": 0.5, "timeout": 2.0}, ...}``. Every value is
validated as if built in Python, and anything wrong is a
:class:`~pulsewire.errors.PolicyError` that names the file and the key: an unknown key
(``intervall``: with the nearest known one), a value of the wrong type, a policy that
cannot work (a timeout shorter than the interval), a file that is not TOML or JSON.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from typing import Any, Literal

import msgspec

from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.errors import PolicyError, UsageError

__all__ = ["Config", "ConfigFormat", "load_config", "parse_config"]

ConfigFormat = Literal["toml", "json"]
"""The formats a configuration can be written in."""

_SUFFIXES: dict[str, ConfigFormat] = {".toml": "toml", ".json": "json"}


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a configuration file holds: a frozen value, each part defaulting to its own
    defaults. Pass the parts where they go::

        config = pulsewire.load_config("pulsewire.toml")
        connection = await pulsewire.connect(
            host, port, policy=config.policy, limits=config.limits,
            socket_options=config.socket_options,
        )
    """

    #: How this side watches its peer (``[policy]``).
    policy: Policy = msgspec.field(default_factory=Policy)
    #: What the peer may make this side hold (``[limits]``).
    limits: Limits = msgspec.field(default_factory=Limits)
    #: What is set on each TCP socket (``[socket_options]``).
    socket_options: SocketOptions = msgspec.field(default_factory=SocketOptions)


def load_config(path: str | os.PathLike[str], *, format: ConfigFormat | None = None) -> Config:
    """Read the configuration in the file at ``path``.

    :param path: a ``.toml`` or ``.json`` file.
    :param format: ``"toml"`` or ``"json"``; by default, from the file's suffix.
    :raises PolicyError: the file is not valid TOML or JSON, has a key that no section
        takes, or holds values that cannot work; the message names the file and the key.
    :raises UsageError: no ``format`` given and the suffix is neither ``.toml`` nor ``.json``.
    :raises OSError: the file cannot be read (``FileNotFoundError``, ``PermissionError``).
    """
    source = os.fspath(path)
    if format is None:
        suffix = os.path.splitext(source)[1].lower()
        if suffix not in _SUFFIXES:
            raise UsageError(
                f"{source}: cannot tell the format from the suffix {suffix!r}: name the "
                "file .toml or .json, or pass format='toml' or format='json'"
            )
        format = _SUFFIXES[suffix]
    with open(source, "rb") as file:
        data = file.read()
    return parse_config(data, format=format, source=source)


def parse_config(text: str | bytes, *, format: ConfigFormat, source: str = "<string>") -> Config:
    """The configuration in ``text``, written in ``format``; errors name ``source``.

    :raises PolicyError: as :func:`load_config`.
    """
    try:
        if format == "toml":
            raw = text.decode() if isinstance(text, bytes) else text
            return msgspec.convert(tomllib.loads(raw), Config)
        if format == "json":
            return msgspec.json.decode(text, type=Config)
    except UnicodeDecodeError as error:
        raise PolicyError(f"{source}: not UTF-8 text ({error.reason})") from None
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{source}: not valid TOML: {error}") from None
    except msgspec.ValidationError as error:
        raise _explain(str(error), source) from None
    except msgspec.DecodeError as error:
        raise PolicyError(f"{source}: not valid JSON: {error}") from None
    raise UsageError(f"format must be 'toml' or 'json', got {format!r}")


# "<message> - at `$.policy.adaptive`": what msgspec says, and where.
_LOCATED = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]*)`$")


def _explain(error: str, source: str) -> PolicyError:
    """msgspec's validation error as one line that names the file, the section, the key."""
    match = _LOCATED.match(error)
    assert match is not None  # the pattern matches any text
    message, path = match["message"], (match["path"] or "").lstrip(".")
    unknown = _UNKNOWN.match(message)
    if unknown is None:
        where = f"{path}: " if path else ""
        return PolicyError(f"{source}: {where}{message.replace('`', '')}")
    key = unknown["key"]
    known = _keys_at(path)
    section = f"in '{path}'" if path else "at the top level"
    hint = difflib.get_close_matches(key, known, n=1)
    nearest = f"did you mean '{hint[0]}'? " if hint else ""
    return PolicyError(
        f"{source}: unknown key '{key}' {section} ({nearest}"
        f"{'it takes' if path else 'sections are'}: {', '.join(known)})"
    )


def _keys_at(path: str) -> list[str]:
    """The keys that the value at ``path`` (``policy.adaptive``, or ``""``: the top) takes."""
    struct: Any = Config
    for name in filter(None, path.split(".")):
        struct = _struct_of(typing.get_type_hints(struct)[name])
    return list(struct.__struct_fields__)


def _struct_of(annotation: Any) -> type[msgspec.Struct]:
    """The Struct in ``annotation`` (``Adaptive | None`` -> ``Adaptive``)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return typing.cast(type[msgspec.Struct], annotation)
