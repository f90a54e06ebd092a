"""Routing policy configuration (hybrid routing: where a request may go).

A rule says *when* it applies (the request carries one of some data classes, comes from one
of some key tiers, or carries one of some client labels) and which models it then *allows*
(by tags: deployment, weights, region, or by name). Every matching rule narrows the set of
allowed models; none widens it. With no ``rules:`` key the safe defaults of
:func:`default_rules` apply; ``rules: []`` means "no restrictions".

Example::

    routing:
      logical_models:
        auto: [gpt-4o-mini, smollm2-135m]
      rules:
        - name: sensitive-data-stays-home
          when: {data_classes: [pii, secrets]}
          allow: {deployment: [on_prem]}
          vendor_if_pseudonymised: true     # or: vendors may see it with placeholders
        - name: restricted-tier
          when: {tiers: [restricted]}
          allow: {deployment: [on_prem]}
        - name: eu-only
          when: {labels: [eu-personal-data]}
          allow: {regions: [eu-west, eu-central]}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wardgate.validation import field_error


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleWhen(_Strict):
    """All given conditions must hold; each list matches if any of its values is present."""

    data_classes: list[str] | None = None
    tiers: list[str] | None = None
    labels: list[str] | None = None
    #: Match when an input guard asked for on-prem only (``restrict_on_prem``).
    restrict_on_prem: bool | None = None
    #: Match every request.
    always: bool = False

    @model_validator(mode="after")
    def _not_empty(self) -> RuleWhen:
        given = [self.data_classes, self.tiers, self.labels, self.restrict_on_prem]
        if not self.always and all(v is None for v in given):
            raise ValueError("a rule's 'when' needs a condition (or 'always: true')")
        return self


class ModelMatch(_Strict):
    """Which models a rule allows; every given field must match (a list is any-of)."""

    deployment: list[Literal["on_prem", "vendor"]] | None = None
    weights: list[Literal["open", "closed"]] | None = None
    regions: list[str] | None = None
    models: list[str] | None = None


class RoutingRule(_Strict):
    name: str = Field(min_length=1, max_length=100)
    when: RuleWhen
    allow: ModelMatch
    #: Vendor models the rule would exclude are allowed if the request is pseudonymised first.
    vendor_if_pseudonymised: bool = False


def default_rules() -> list[RoutingRule]:
    """PII, secrets, confidential labels and the restricted tier never leave on-prem."""
    on_prem = ModelMatch(deployment=["on_prem"])
    return [
        RoutingRule(name="guard-restricted", when=RuleWhen(restrict_on_prem=True), allow=on_prem),
        RoutingRule(
            name="sensitive-data-on-prem",
            when=RuleWhen(data_classes=["pii", "secrets"]),
            allow=on_prem,
        ),
        RoutingRule(
            name="confidential-label-on-prem",
            when=RuleWhen(labels=["confidential", "restricted", "secret"]),
            allow=on_prem,
        ),
        RoutingRule(
            name="restricted-tier-on-prem", when=RuleWhen(tiers=["restricted"]), allow=on_prem
        ),
    ]


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Logical model names a client may ask for (e.g. ``auto``) and the candidates, in order.
    logical_models: dict[str, list[str]] = Field(default_factory=dict)
    #: None: :func:`default_rules`. An empty list: no restrictions.
    rules: list[RoutingRule] | None = None
    #: Labels clients may send (``x-wardgate-data-class`` header or ``metadata.data_class``).
    #: A label outside this list is treated per ``unknown_label``: a typo must not route
    #: confidential data to a vendor.
    known_labels: list[str] = Field(
        default_factory=lambda: ["public", "internal", "confidential", "restricted", "secret"]
    )
    unknown_label: Literal["on_prem", "refuse", "ignore"] = "on_prem"

    @model_validator(mode="after")
    def _unique_rule_names(self) -> RoutingConfig:
        names = [r.name for r in self.rules or []]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise field_error("rules", f"duplicate routing rule names {dupes}")
        return self

    @property
    def effective_rules(self) -> list[RoutingRule]:
        return default_rules() if self.rules is None else list(self.rules)
