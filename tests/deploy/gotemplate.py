"""A small renderer for the subset of Go templates (and Helm functions) the chart uses.

There is no ``helm`` binary here, so the tests render ``deploy/helm/baselined``
with this instead. It supports what the chart's templates use and refuses
anything else (a template that grows beyond it fails loudly, never renders
wrongly): ``{{ pipeline }}``, ``{{-``/``-}}`` trimming, comments, ``if``/
``else if``/``else``, ``with``/``else``, ``define``, field chains on ``.``,
string and number literals, parentheses, ``|`` pipes, and the functions in
``FUNCTIONS``. A missing map key is an error (Helm would print an empty value),
so a misspelled ``.Values`` path fails the tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TemplateError", "Templates", "deep_merge", "render_chart"]


class TemplateError(Exception):
    """A template uses something this renderer does not support, or fails to evaluate."""


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r'\s*(?:(\()|(\))|(\|)|("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?)|(\.[\w.]*)|(\w+))')


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pipeline: str


@dataclass
class _Branch:
    kind: str  # "if" or "with"
    cases: list[tuple[str | None, list[Any]]] = field(default_factory=list)


def _lex(source: str) -> list[_Text | tuple[str, str]]:
    """Split into text and (keyword, rest) actions, applying whitespace trimming."""
    parts: list[_Text | tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(source):
        text = source[pos : m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        parts.append(_Text(text))
        body = m.group(2).strip()
        trim_next = bool(m.group(3))
        pos = m.end()
        if body.startswith("/*"):
            if not body.endswith("*/"):
                raise TemplateError(f"unterminated comment: {body[:30]!r}")
            continue
        word, _, rest = body.partition(" ")
        if word in ("if", "with", "define", "else", "end"):
            parts.append((word, rest.strip()))
        elif word in ("range", "template", "block", "tpl") or body.startswith("$"):
            raise TemplateError(f"unsupported action {{{{ {body} }}}}")
        else:
            parts.append(("", body))
    tail = source[pos:]
    parts.append(_Text(tail.lstrip() if trim_next else tail))
    return parts


def _parse(parts: list[_Text | tuple[str, str]], defines: dict[str, list[Any]]) -> list[Any]:
    """Build a node tree; ``define`` bodies go into ``defines``."""
    root: list[Any] = []
    stack: list[tuple[str, Any, list[Any]]] = [("root", None, root)]
    for part in parts:
        body = stack[-1][2]
        if isinstance(part, _Text):
            if part.text:
                body.append(part)
            continue
        word, rest = part
        if word == "":
            body.append(_Action(rest))
        elif word in ("if", "with"):
            node = _Branch(word, [(rest, [])])
            body.append(node)
            stack.append((word, node, node.cases[0][1]))
        elif word == "define":
            name = json.loads(rest)
            new: list[Any] = []
            defines[name] = new
            stack.append(("define", name, new))
        elif word == "else":
            kind, node, _ = stack[-1]
            if kind not in ("if", "with"):
                raise TemplateError("else outside if/with")
            cond: str | None = None
            if rest.startswith("if "):
                if kind != "if":
                    raise TemplateError("else if inside with")
                cond = rest[3:].strip()
            elif rest:
                raise TemplateError(f"unsupported else {rest!r}")
            node.cases.append((cond, []))
            stack[-1] = (kind, node, node.cases[-1][1])
        elif word == "end":
            if len(stack) == 1:
                raise TemplateError("end without a block")
            stack.pop()
    if len(stack) != 1:
        raise TemplateError(f"unclosed {stack[-1][0]}")
    return root


def _to_text(value: Any) -> str:
    if value is None:
        raise TemplateError("printing a nil value")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        raise TemplateError(f"printing a {type(value).__name__} without toYaml")
    return str(value)


def _printf(fmt: str, *args: Any) -> str:
    values = iter(args)

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        return _to_text(next(values))

    out = re.sub(r"%[svd%]", sub, fmt)
    if next(values, None) is not None:
        raise TemplateError(f"printf {fmt!r}: too many arguments")
    return out


def _to_yaml(value: Any) -> str:
    text: str = yaml.safe_dump(value, default_flow_style=False, sort_keys=True)
    return text.rstrip("\n")


def _indent(n: int, text: str) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.split("\n"))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "default": lambda d, v=None: v if v else d,
    "quote": lambda v: json.dumps(_to_text(v)),
    "trunc": lambda n, s: s[:n],
    "trimSuffix": lambda suffix, s: s[: -len(suffix)] if suffix and s.endswith(suffix) else s,
    "replace": lambda old, new, s: s.replace(old, new),
    "printf": _printf,
    "toYaml": _to_yaml,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "indent": _indent,
    "eq": lambda a, b: a == b,
    "not": lambda v: not v,
}


class Templates:
    """A set of parsed templates sharing their ``define``s (like one Helm chart)."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self.defines: dict[str, list[Any]] = {}
        self.trees = {name: _parse(_lex(text), self.defines) for name, text in sources.items()}

    def render(self, name: str, dot: Any) -> str:
        """Render template ``name`` with ``dot`` as the context."""
        return self._nodes(self.trees[name], dot)

    def _nodes(self, nodes: list[Any], dot: Any) -> str:
        out: list[str] = []
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                out.append(_to_text(self._pipeline(node.pipeline, dot)))
            else:
                out.append(self._branch(node, dot))
        return "".join(out)

    def _branch(self, node: _Branch, dot: Any) -> str:
        for cond, body in node.cases:
            if cond is None:
                return self._nodes(body, dot)
            value = self._pipeline(cond, dot)
            if value:
                return self._nodes(body, value if node.kind == "with" else dot)
        return ""

    def _pipeline(self, text: str, dot: Any) -> Any:
        tokens = self._tokens(text)
        value, pos = self._pipe(tokens, 0, dot)
        if pos != len(tokens):
            raise TemplateError(f"unexpected {tokens[pos]!r} in {text!r}")
        return value

    @staticmethod
    def _tokens(text: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        pos = 0
        kinds = ("(", ")", "|", "str", "num", "field", "ident")
        while pos < len(text.rstrip()):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise TemplateError(f"cannot read {text[pos:]!r}")
            idx = next(i for i in range(7) if m.group(i + 1) is not None)
            tokens.append((kinds[idx], m.group(idx + 1)))
            pos = m.end()
        return tokens

    def _pipe(self, tokens: list[tuple[str, str]], pos: int, dot: Any) -> tuple[Any, int]:
        value, pos = self._command(tokens, pos, dot, piped=False, prev=None)
        while pos < len(tokens) and tokens[pos][0] == "|":
            value, pos = self._command(tokens, pos + 1, dot, piped=True, prev=value)
        return value, pos

    def _command(
        self, tokens: list[tuple[str, str]], pos: int, dot: Any, *, piped: bool, prev: Any
    ) -> tuple[Any, int]:
        operands: list[tuple[str, Any]] = []
        while pos < len(tokens) and tokens[pos][0] not in ("|", ")"):
            kind, text = tokens[pos]
            if kind == "(":
                sub, pos = self._pipe(tokens, pos + 1, dot)
                if pos >= len(tokens) or tokens[pos][0] != ")":
                    raise TemplateError("unclosed parenthesis")
                operands.append(("value", sub))
            elif kind == "str":
                operands.append(("value", json.loads(text)))
            elif kind == "num":
                operands.append(("value", float(text) if "." in text else int(text)))
            elif kind == "field":
                operands.append(("value", self._field(text, dot)))
            else:
                operands.append(("ident", text))
            pos += 1
        if not operands:
            raise TemplateError("empty command")
        head_kind, head = operands[0]
        if head_kind == "ident":
            if head == "include":
                args = [v for _, v in operands[1:]] + ([prev] if piped else [])
                name, ctx = args
                if name not in self.defines:
                    raise TemplateError(f"include of undefined template {name!r}")
                return self._nodes(self.defines[name], ctx), pos
            fn = FUNCTIONS.get(head)
            if fn is None:
                raise TemplateError(f"unsupported function {head!r}")
            args = [v for _, v in operands[1:]] + ([prev] if piped else [])
            return fn(*args), pos
        if len(operands) != 1 or piped:
            raise TemplateError(f"cannot call a value: {operands!r}")
        return head, pos

    @staticmethod
    def _field(path: str, dot: Any) -> Any:
        value = dot
        for key in [k for k in path.split(".") if k]:
            if not isinstance(value, Mapping) or key not in value:
                raise TemplateError(f"no field {key!r} in {path!r}")
            value = value[key]
        return value


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base`` the way Helm merges ``--set`` values."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def render_chart(
    chart: Path, overrides: Mapping[str, Any] | None = None, release: str = "demo"
) -> dict[str, str]:
    """Render every template of ``chart`` (not ``_*.tpl``) with its values plus ``overrides``."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    values = deep_merge(yaml.safe_load((chart / "values.yaml").read_text()), overrides or {})
    files = sorted((chart / "templates").iterdir())
    templates = Templates({p.name: p.read_text() for p in files})
    dot = {
        "Values": values,
        "Release": {"Name": release, "Namespace": "default", "Service": "Helm"},
        "Chart": {
            "Name": meta["name"],
            "Version": meta["version"],
            "AppVersion": meta["appVersion"],
        },
    }
    return {p.name: templates.render(p.name, dot) for p in files if not p.name.startswith("_")}
