"""Kubernetes LabelSelector semantics (matchLabels + matchExpressions), compiled once.

An empty selector matches everything. ``In``/``NotIn`` need at least one value;
``Exists``/``DoesNotExist`` take none; ``NotIn`` and ``DoesNotExist`` match when the key is absent.
"""

from __future__ import annotations

from typing import Any, FrozenSet, Mapping, Optional, Tuple

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class InvalidSelector(ValueError):
    pass


class LabelSelector:
    __slots__ = ("match_labels", "expressions")

    def __init__(self, match_labels: Mapping[str, str], expressions: Tuple[Tuple[str, str, FrozenSet[str]], ...]):
        self.match_labels = dict(match_labels)
        self.expressions = expressions

    @classmethod
    def parse(cls, spec: Optional[Mapping[str, Any]], where: str = "selector") -> "LabelSelector":
        """Compile a LabelSelector dict; raise :class:`InvalidSelector` saying what is wrong."""
        if spec is None:
            return cls({}, ())
        if not isinstance(spec, Mapping):
            raise InvalidSelector(f"{where} must be an object")
        match_labels = spec.get("matchLabels") or {}
        if not isinstance(match_labels, Mapping):
            raise InvalidSelector(f"{where}.matchLabels must be a map")
        labels = {}
        for key, value in match_labels.items():
            if not isinstance(value, (str, int, bool)) or value is None:
                raise InvalidSelector(f"{where}.matchLabels[{key!r}] must be a string")
            labels[str(key)] = _label_value(value)
        exprs = []
        raw_exprs = spec.get("matchExpressions") or []
        if not isinstance(raw_exprs, list):
            raise InvalidSelector(f"{where}.matchExpressions must be a list")
        for i, expr in enumerate(raw_exprs):
            at = f"{where}.matchExpressions[{i}]"
            if not isinstance(expr, Mapping):
                raise InvalidSelector(f"{at} must be an object")
            key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
            if not isinstance(key, str) or not key:
                raise InvalidSelector(f"{at}.key is required")
            if op not in OPERATORS:
                raise InvalidSelector(f"{at}.operator {op!r} is not one of {', '.join(OPERATORS)}")
            if not isinstance(values, list):
                raise InvalidSelector(f"{at}.values must be a list")
            if op in ("In", "NotIn") and not values:
                raise InvalidSelector(f"{at}: operator {op} needs at least one value")
            if op in ("Exists", "DoesNotExist") and values:
                raise InvalidSelector(f"{at}: operator {op} takes no values")
            exprs.append((key, op, frozenset(_label_value(v) for v in values)))
        return cls(labels, tuple(exprs))

    def is_empty(self) -> bool:
        return not self.match_labels and not self.expressions

    def matches(self, labels: Optional[Mapping[str, str]]) -> bool:
        labels = labels or {}
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        for key, op, values in self.expressions:
            if op == "In":
                if labels.get(key) not in values:
                    return False
            elif op == "NotIn":
                if key in labels and labels[key] in values:
                    return False
            elif op == "Exists":
                if key not in labels:
                    return False
            elif key in labels:  # DoesNotExist
                return False
        return True

    def explain(self, labels: Optional[Mapping[str, str]]) -> Optional[str]:
        """``None`` when it matches, else the first requirement that fails, in words."""
        labels = labels or {}
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                have = f"has {key}={labels[key]}" if key in labels else f"has no {key}"
                return f"needs {key}={value}, {have}"
        for key, op, values in self.expressions:
            if not LabelSelector({}, ((key, op, values),)).matches(labels):
                listed = ",".join(sorted(values))
                have = f"has {key}={labels[key]}" if key in labels else f"has no {key}"
                return f"needs {key} {op} ({listed}), {have}" if values else f"needs {key} {op}, {have}"
        return None

    def query(self) -> str:
        """The selector as the API's ``labelSelector`` query parameter writes it."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for key, op, values in self.expressions:
            listed = ",".join(sorted(values))
            parts.append({"In": f"{key} in ({listed})", "NotIn": f"{key} notin ({listed})", "Exists": key,
                          "DoesNotExist": f"!{key}"}[op])
        return ",".join(parts)

    def __repr__(self) -> str:
        return f"LabelSelector({self.match_labels!r}, {self.expressions!r})"


def _label_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def match_fields(selector: Optional[str], obj: Mapping[str, Any]) -> bool:
    """Evaluate a field selector such as ``spec.nodeName=,status.phase!=Failed`` on a dict.

    Used where there is no API server to do it (static caches of offline runs and tests).
    """
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            path, want, negate = *term.split("!=", 1), True
        else:
            path, want = term.split("==", 1) if "==" in term else term.split("=", 1)
            negate = False
        value: Any = obj
        for part in path.strip().split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        have = "" if value is None else str(value)
        if (have == want.strip()) == negate:
            return False
    return True
