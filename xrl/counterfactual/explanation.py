"""The explanation container returned by explainers (alibi-compatible ``meta`` / ``data`` layout)."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..io import _jsonable


class Explanation:
    """Result of ``explain``: ``meta`` (explainer name and parameters) and ``data`` (arrays, as the explainer's
    ``explain`` documents); keys are also reachable as attributes (``exp.cf["X"]``), as in alibi."""

    def __init__(self, meta: dict[str, Any], data: dict[str, Any]) -> None:
        self.meta, self.data = meta, data

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("data", {})
        if name in data:
            return data[name]
        raise AttributeError(f"Explanation has no attribute or data key {name!r}; data keys: {sorted(data)}")

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __repr__(self) -> str:
        def describe(v: Any) -> Any:
            return (f"array{tuple(v.shape)}" if isinstance(v, np.ndarray) else
                    {k: describe(x) for k, x in v.items()} if isinstance(v, dict) else v)

        return f"Explanation(meta={{'name': {self.meta.get('name')!r}}}, data={describe(self.data)})"

    def to_json(self) -> str:
        """``meta`` and ``data`` as JSON (arrays as nested lists)."""
        return json.dumps({"meta": self.meta, "data": self.data}, default=_jsonable)
