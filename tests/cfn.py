"""A few CloudFormation intrinsics evaluated offline, for the template's parameters and conditions:
what a deploy with given parameter values would hold (Ref, Fn::If, Fn::Equals, Fn::Not, Fn::And,
Fn::Or, Condition). Anything else is returned as written."""

from __future__ import annotations

from typing import Any


class Stack:
    def __init__(self, template: dict, parameters: dict[str, Any] | None = None,
                 resources: dict[str, Any] | None = None) -> None:
        self.template = template
        self.values = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
        self.values.update(parameters or {})
        self.resources = resources or {}  # logical id -> what its Ref stands for here

    def condition(self, name: str) -> bool:
        return bool(self.value(self.template["Conditions"][name]))

    def exists(self, logical_id: str) -> bool:
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def value(self, node: Any) -> Any:
        if not isinstance(node, dict) or len(node) != 1:
            return node
        ((fn, arg),) = node.items()
        if fn == "Ref":
            return self.values[arg] if arg in self.values else self.resources[arg]
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::If":
            name, yes, no = arg
            return self.value(yes if self.condition(name) else no)
        if fn == "Fn::Equals":
            left, right = (self.value(a) for a in arg)
            return str(left) == str(right)
        if fn == "Fn::Not":
            return not self.value(arg[0])
        if fn == "Fn::And":
            return all(self.value(a) for a in arg)
        if fn == "Fn::Or":
            return any(self.value(a) for a in arg)
        return node
