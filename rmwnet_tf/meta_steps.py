"""The ways to compute the meta step, by name, as data: one `--meta_step` flag picks one.

Three are exact and differ only in speed; `head` is an approximation. Each name is also the
name of the function in `lookahead.py` that computes the step (adding one: an entry here and
that function there). `grad` and `scope` describe it: how the directional derivatives of the
per-sample losses are obtained, and which weights the virtual step moves. Naming whole steps
(rather than crossing a gradient flag with a scope flag) leaves no meaningless combination.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class MetaStep:
    name: str
    grad: str  # "double_backward" | "jvp" | "nested"
    scope: str  # "full": every trainable weight; "head": the last Dense layer only
    exact: bool
    summary: str


META_STEPS: dict[str, MetaStep] = {
    s.name: s
    for s in (
        MetaStep("exact", "double_backward", "full", True,
                 "exact; the backward pass differentiated once more (reuses the forward)"),
        MetaStep("jvp", "jvp", "full", True, "exact; a forward-mode product (reuses the forward)"),
        MetaStep("nested", "nested", "full", True,
                 "exact; the textbook nested-tape second-order step, the tests' reference"),
        MetaStep("head", "double_backward", "head", False,
                 "approximate; the virtual step moves only the last Dense layer (cheap)"),
    )
}


def get_meta_step(name: str) -> MetaStep:
    try:
        return META_STEPS[name]
    except KeyError:
        raise ValueError(f"unknown meta step {name!r}; known: {', '.join(META_STEPS)}") from None
