"""YAML read safely: ``safe_load`` (no tags run) with bounds on size and aliases.

Nested aliases let a 539-byte file grow past gigabytes when loaded (the "billion laughs"); a
config or a model definition needs a handful of them at most. Errors are one line.
"""

from __future__ import annotations

import yaml

from cnnlab.errors import ConfigError

MAX_YAML_CHARS = 1 << 20
MAX_ALIASES = 50


def load_yaml(text: str, source: str) -> object:
    """The value of YAML ``text`` (``source`` names it in errors)."""
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(f"{source}: {len(text)} characters is too large for a settings file")
    try:
        aliases = sum(1 for token in yaml.scan(text) if isinstance(token, yaml.AliasToken))
        if aliases > MAX_ALIASES:
            raise ConfigError(f"{source}: {aliases} YAML aliases (at most {MAX_ALIASES}); write "
                              "the values out")
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({yaml_problem(error)})") from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """One line: the problem and where (YAML's own message spans four)."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem
