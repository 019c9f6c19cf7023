"""Validated settings: the strict pydantic base every configuration and spec uses, and pydantic's
errors as one line (ground floor: imports nothing of neurokd)."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator


class StrictModel(BaseModel):
    """Unknown keys, NaN and infinities are refused; so are true/false where a number is meant."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is not bool and bool not in get_args(annotation):
                raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


def format_validation_error(exc: ValidationError) -> str:
    """First problem of a pydantic error, as one line: ``key.path: message``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "value"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    extra = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return f"{loc}: {msg}{extra}"
