"""Flag groups shared by several commands, so each is spelled and explained once.

- :func:`add_config_flags` / :func:`config_values`: the flags of :class:`cnnlab.TrainConfig`,
  generated from its fields (help text, group, choices and defaults live with the field).
- :func:`add_data`: ``--data``, ``--data-root``, ``--download``, ``--skip-bad`` for every
  command that reads a data set.
- :func:`add_output`: ``--out`` and ``--overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses

import yaml

from cnnlab.config import GROUPS, TrainConfig, flag_name
from cnnlab.data.request import DataRequest
from cnnlab.errors import ConfigError

OVERWRITE_HELP = ("replace output files that exist and were not written by cnnlab (a run's own "
                  "checkpoints and settings are never replaced)")
DATA_FLAGS = ("data", "data_root", "download", "skip_bad", "data_budget")


def add_output(parser: argparse.ArgumentParser, help: str, *, default: str | None = None,
               metavar: str | None = None) -> None:
    """``--out`` and ``--overwrite``: cnnlab never writes over a file it did not write unless
    ``--overwrite`` is given (:func:`cnnlab.files.overwriting`, applied in ``cli.main``)."""
    parser.add_argument("--out", default=default, metavar=metavar, help=help)
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def add_data(parser: argparse.ArgumentParser, *, data_help: str | None = None,
             required: bool = False, default: str | None = None) -> None:
    """The data flags of every command that reads a data set (``args.data``,
    ``args.data_root``, ``args.download``, ``args.skip_bad``)."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=required, default=default,
                       help=data_help or "data set name or image folder (default: the one the "
                                         "run was trained on)")
    for name in DATA_FLAGS[1:]:
        _add_field(group, _field(name), default=None)


def data_request(args: argparse.Namespace) -> DataRequest:
    """The :class:`~cnnlab.data.request.DataRequest` of :func:`add_data`'s flags."""
    return DataRequest(args.data, args.data_root, bool(args.download), bool(args.skip_bad),
                       args.data_budget)


def _field(name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(TrainConfig) if f.name == name)


def _default_text(item: dataclasses.Field) -> str:
    default = item.default_factory() if item.default_factory is not dataclasses.MISSING \
        else item.default
    if default in (None, "", [], {}) or isinstance(default, bool):
        return ""
    return f" (default: {default})"


def _add_field(group, item: dataclasses.Field, default=None) -> None:
    """One TrainConfig field as a flag; ``default=None`` means "not given" (so a config file or
    a resumed run keeps its own value)."""
    meta, kind = item.metadata, str(item.type).replace(" | None", "")
    flag, text = flag_name(item), meta["help"] + _default_text(item)
    if item.name == "progress":
        group.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                           default=default, help="no progress bar")
    elif kind == "bool":
        group.add_argument(flag, dest=item.name, action="store_const", const=True,
                           default=default, help=text)
    elif kind == "dict":
        group.add_argument(flag, dest=item.name, action="append", metavar="KEY=VALUE",
                           default=default, help=text)
    elif kind == "list[int]":
        group.add_argument(flag, dest=item.name, metavar="LIST", default=default, help=text)
    else:
        choices = meta.get("choices")
        group.add_argument(flag, dest=item.name, type={"int": int, "float": float}.get(kind, str),
                           default=default, help=text,
                           metavar="{" + ",".join(choices) + "}" if choices else None)


def add_config_flags(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None
                     ) -> None:
    """The flags of ``names`` (default: every TrainConfig field), in their groups."""
    fields = [f for f in dataclasses.fields(TrainConfig) if names is None or f.name in names]
    for group_name in GROUPS:
        mine = [f for f in fields if f.metadata["group"] == group_name]
        if mine:
            group = parser.add_argument_group(group_name)
            for item in mine:
                _add_field(group, item)


def config_values(args: argparse.Namespace, base: TrainConfig | None = None,
                  names: tuple[str, ...] | None = None) -> dict:
    """The TrainConfig fields the flags set (``--option`` pairs merged into ``base``'s)."""
    values = {}
    for item in dataclasses.fields(TrainConfig):
        value = getattr(args, item.name, None)
        if value is None or (names is not None and item.name not in names):
            continue
        if item.name == "model_options":
            value = {**(base.model_options if base else {}), **parse_options(value)}
        elif item.name == "snapshot_epochs":
            value = parse_epochs(value)
        values[item.name] = value
    return values


def parse_options(pairs: list[str]) -> dict:
    """``["activation=relu", "partial_c3=true"]`` -> ``{"activation": "relu", ...}``."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            options[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or "not valid YAML"
            raise ConfigError(f"--option {pair!r}: cannot read the value ({problem}); write "
                              f"lists as [1,2,3] and quote KEY=VALUE in the shell") from None
    return options


def parse_epochs(text: str) -> list[int]:
    """``"1,2,5"`` -> ``[1, 2, 5]``."""
    try:
        return [int(e) for e in text.split(",")]
    except ValueError:
        raise ConfigError(f"--snapshot-epochs {text!r}: expected e.g. 1,2,5") from None
