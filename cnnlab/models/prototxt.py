"""A small reader for the protobuf text format (Caffe's ``.prototxt`` network definitions).

Lecture 004 defines a layer as ``layer { name: "conv1" type: "Convolution" param { lr_mult: 1 }
convolution_param { num_output: 96 kernel_size: 11 } }``. That is protobuf's text format: fields
``name: value`` (numbers, quoted strings, enum names, ``true``/``false``), messages
``name { ... }`` (also ``name: { ... }`` and ``name < ... >``), repeated fields by repetition or
as a list ``dim: [1, 3, 227, 227]``, optional ``,``/``;`` separators and ``#`` comments. Without
Caffe's schema, values keep the type they are written in; :mod:`cnnlab.models.caffe` checks
them. Every error names the file and line.

Example:
    >>> net = parse_prototxt('layer { name: "conv1" param { lr_mult: 2 } }  # comment', "x")
    >>> layer = net.all("layer")[0]
    >>> layer.get("name"), layer.all("param")[0].get("lr_mult"), layer.line
    ('conv1', 2, 1)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cnnlab.errors import ModelError

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\f\v]+) | (?P<newline>\n) | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?)(?![\w.]))
  | (?P<name>-?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}<>:,;\[\]])
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "?": "?"}
_CLOSE = {"{": "}", "<": ">"}


@dataclass
class Message:
    """One message: its fields in file order as ``(name, value, line)``; ``line`` is where it
    starts. Singular fields read with :meth:`get` (the last value wins, as in protobuf),
    repeated ones with :meth:`all`."""

    line: int
    fields: list[tuple[str, object, int]] = field(default_factory=list)

    def all(self, name: str) -> list:
        """Every value of field ``name``, in order (``[]`` when absent)."""
        return [value for key, value, _ in self.fields if key == name]

    def get(self, name: str, default: object = None) -> object:
        """The value of singular field ``name`` (the last one given), else ``default``."""
        values = self.all(name)
        return values[-1] if values else default

    def line_of(self, name: str) -> int:
        """The line of field ``name`` (the message's own line when absent)."""
        return next((line for key, _, line in reversed(self.fields) if key == name), self.line)

    def names(self) -> list[str]:
        """Field names in first-appearance order."""
        return list(dict.fromkeys(key for key, _, _ in self.fields))


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, name, punct, end
    text: str
    line: int


def _tokens(text: str, source: str) -> list[_Token]:
    tokens, line, pos = [], 1, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None and text[pos] in "\"'":
            raise ModelError(f"{source}:{line}: unterminated string (a string ends on its line "
                             "with the same quote it starts with)")
        if match is None:
            snippet = text[pos:pos + 10].split("\n")[0]
            raise ModelError(f"{source}:{line}: cannot read {snippet!r} (protobuf text format: "
                             'fields are name: value or name { ... }, strings in "quotes")')
        kind = match.lastgroup
        if kind == "newline":
            line += 1
        elif kind not in ("space", "comment"):
            tokens.append(_Token(kind, match.group(), line))
        pos = match.end()
    tokens.append(_Token("end", "end of file", line))
    return tokens


def _unquote(token: _Token, source: str) -> str:
    body, out, i = token.text[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "xX" and re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:]):
            digits = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:]).group()
            out.append(chr(int(digits, 16)))
            i += 2 + len(digits)
        elif nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1:]).group()
            out.append(chr(int(digits, 8)))
            i += 1 + len(digits)
        else:
            raise ModelError(f"{source}:{token.line}: unknown escape '\\{nxt}' in {token.text}")
    return "".join(out)


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.tokens = _tokens(text, source)
        self.pos = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return token

    def error(self, token: _Token, message: str) -> ModelError:
        return ModelError(f"{self.source}:{token.line}: {message}")

    def body(self, line: int, close: str | None) -> Message:
        """Fields up to ``close`` (``}`` or ``>``), or to the end of the file when None."""
        message = Message(line)
        while True:
            token = self.take()
            if token.kind == "end":
                if close is not None:
                    raise self.error(token, f"missing '{close}' for the message opened at "
                                            f"line {line}")
                return message
            if token.kind == "punct" and token.text == close:
                return message
            if token.kind != "name" or token.text.startswith("-"):
                raise self.error(token, f"expected a field name, got {token.text!r}"
                                 + (" (no message is open here)" if token.text in "}>" else ""))
            message.fields.extend((token.text, v, token.line) for v in self.field(token))
            if self.peek().kind == "punct" and self.peek().text in ",;":
                self.take()

    def field(self, name: _Token) -> list:
        """The value(s) after field ``name``: a message, a list or one scalar."""
        token = self.take()
        colon = token.kind == "punct" and token.text == ":"
        if colon:
            token = self.take()
        if token.kind == "punct" and token.text in _CLOSE:
            return [self.body(token.line, _CLOSE[token.text])]
        if not colon:
            raise self.error(token, f"expected ':' or '{{' after {name.text!r}, "
                                    f"got {token.text!r}")
        if token.kind == "punct" and token.text == "[":
            return self.list(token)
        return [self.scalar(token, name.text)]

    def list(self, opening: _Token) -> list:
        values: list = []
        while True:
            token = self.take()
            if token.kind == "punct" and token.text == "]" and not values:
                return values
            if token.kind == "punct" and token.text in _CLOSE:
                values.append(self.body(token.line, _CLOSE[token.text]))
            else:
                values.append(self.scalar(token, "list"))
            token = self.take()
            if token.kind == "punct" and token.text == "]":
                return values
            if not (token.kind == "punct" and token.text == ","):
                raise self.error(token, f"expected ',' or ']' in the list opened at line "
                                        f"{opening.line}, got {token.text!r}")

    def scalar(self, token: _Token, name: str) -> object:
        if token.kind == "string":
            text = _unquote(token, self.source)
            while self.peek().kind == "string":  # adjacent strings concatenate
                text += _unquote(self.take(), self.source)
            return text
        if token.kind == "number":
            return _number(token.text)
        if token.kind == "name":
            lowered = token.text.lower().lstrip("-")
            if lowered in ("inf", "infinity", "nan"):
                return float(token.text.lower().replace("infinity", "inf"))
            if token.text in ("true", "True", "t"):
                return True
            if token.text in ("false", "False", "f"):
                return False
            if not token.text.startswith("-"):
                return token.text  # an enum value such as MAX or TEST
        raise self.error(token, f"expected a value for {name!r}, got {token.text!r}")


def _number(text: str) -> int | float:
    if text.lower().lstrip("+-").startswith("0x"):
        return int(text, 16)
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    return float(text.rstrip("fF"))


def parse_prototxt(text: str, source: str = "<prototxt>") -> Message:
    """Parse protobuf text ``text`` into its top-level :class:`Message`; ``source`` names the
    file in errors (``net.prototxt:12: expected ':' or '{' after 'kernel_size', got '5'``)."""
    return _Parser(text, source).body(1, None)
