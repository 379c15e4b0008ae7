"""The base every API model shares, and cross-field rules defined once for two enforcers.

A cross-field rule has to hold in two places: the API server (as a CEL
`x-kubernetes-validations` entry in the CRD) and Python (the operator and the
offline validator parse specs with these models). `Rule` keeps the CEL text,
the Python predicate, the message and the field it is about side by side, so
the two enforcers cannot drift apart in wording or in which field they blame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

RULE_ERROR = "rule"
"""The pydantic error type of a broken `Rule`; its context carries the blamed field."""

CelReason = Literal["FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden"]


@dataclass(frozen=True)
class Rule:
    """One cross-field rule of the object it is attached to.

    `cel` and `holds` must express the same condition; `field` is the camelCase
    path (relative to the object) of the field the message is about, which the
    API server reports through `fieldPath` and the offline validator appends to
    the object's path. Without `field` the object itself is blamed.
    """

    cel: str
    message: str
    holds: Callable[[Any], bool]
    field: str | None = None
    reason: CelReason = "FieldValueInvalid"
    optional_old_self: bool = False
    """Evaluate on create too when the rule uses `oldSelf` (an optional then)."""

    def x_kubernetes_validation(self) -> dict[str, Any]:
        """The entry for the CRD's `x-kubernetes-validations` list."""
        entry: dict[str, Any] = {"rule": self.cel, "message": self.message}
        if self.field:
            entry["fieldPath"] = f".{self.field}"
        entry["reason"] = self.reason
        if self.optional_old_self:
            entry["optionalOldSelf"] = True
        return entry


class ApiModel(BaseModel):
    """Base of every model: closed, camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in type(self).rules:
            if not rule.holds(self):
                raise PydanticCustomError(RULE_ERROR, rule.message, {"field": rule.field or ""})
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = super().__get_pydantic_json_schema__(core_schema, handler)
        if cls.rules:
            handler.resolve_ref_schema(json_schema)["x-kubernetes-validations"] = [
                rule.x_kubernetes_validation() for rule in cls.rules
            ]
        return json_schema

    def to_api(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
