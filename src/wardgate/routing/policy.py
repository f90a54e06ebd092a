"""Hybrid routing: decide which models may serve a request, from what it carries and who sent it.

Inputs: the model name the client asked for (a real model or a logical name such as ``auto``),
the data classes the input guards found (``pii``, ``secrets``), whether a guard asked for
on-prem only, the API key's tier, and the client's confidentiality label. Output: a
:class:`RoutingDecision` - the ordered candidates, the full set of models the request may reach
(the failover engine must not fall back outside it), the models that need pseudonymisation
first, and a reason - all JSON-able for the audit record.

When no allowed model can serve, :meth:`RoutingPolicy.decide` raises
:class:`~wardgate.errors.RoutingRefused`: the request is refused, never sent elsewhere.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wardgate.errors import ConfigError, ConfigProblem, ModelNotFound, RoutingRefused
from wardgate.routing.config import ModelMatch, RoutingConfig, RoutingRule, RuleWhen

if TYPE_CHECKING:
    from wardgate.config import ModelConfig

#: Request field a client may use instead of the header: ``{"metadata": {"data_class": ...}}``.
LABEL_METADATA_KEY = "data_class"
UNKNOWN_LABEL_RULE = "unknown-label-on-prem"
#: Why a model outside the API key's models is excluded (audit record, failover trace).
NOT_FOR_KEY = "not allowed for this API key"
#: Distinct key model lists whose scope is remembered (keys are issued by an administrator).
_SCOPE_CACHE_SIZE = 4096
#: Distinct decision inputs remembered (model, data classes, tier, label, key models).
_DECISION_CACHE_SIZE = 4096


class PolicyRefused(RoutingRefused):
    """A :class:`RoutingRefused` carrying the JSON-able decision record for the audit log."""

    def __init__(self, message: str, *, decision: dict[str, Any], code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.decision = decision


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Where a request may go, and why. ``candidates`` are tried in order."""

    requested: str
    candidates: list[str]
    reason: str
    allowed: frozenset[str] = frozenset()
    #: Models the API key may reach (``None``: every model); ``allowed`` is already within it.
    key_scope: frozenset[str] | None = None
    pseudonymise: frozenset[str] = frozenset()
    rules: tuple[str, ...] = ()
    excluded: Mapping[str, str] = field(default_factory=dict)
    data_classes: tuple[str, ...] = ()
    tier: str | None = None
    label: str | None = None

    def requires_pseudonymisation(self, model: str) -> bool:
        return model in self.pseudonymise

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "candidates": list(self.candidates),
            "reason": self.reason,
            "allowed": sorted(self.allowed),
            "pseudonymise": sorted(self.pseudonymise),
            "rules": list(self.rules),
            "excluded": dict(self.excluded),
            "data_classes": list(self.data_classes),
            "tier": self.tier,
            "label": self.label,
        }


def request_label(header_value: str | None, metadata: object) -> str | None:
    """The client's confidentiality label: the header wins over ``metadata.data_class``."""
    if header_value and header_value.strip():
        return header_value.strip().lower()
    if isinstance(metadata, Mapping):
        value = metadata.get(LABEL_METADATA_KEY)
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return None


def _matches_when(
    when: RuleWhen, data_classes: set[str], tier: str | None, label: str | None, restrict: bool
) -> bool:
    if when.always:
        return True
    checks = []
    if when.data_classes is not None:
        checks.append(bool(data_classes & set(when.data_classes)))
    if when.tiers is not None:
        checks.append(tier in when.tiers)
    if when.labels is not None:
        checks.append(label in when.labels)
    if when.restrict_on_prem is not None:
        checks.append(restrict == when.restrict_on_prem)
    return all(checks)


def _matches_model(
    match: ModelMatch, model: ModelConfig, *, ignore_deployment: bool = False
) -> bool:
    tags = model.tags
    if (
        match.deployment is not None
        and not ignore_deployment
        and model.deployment not in match.deployment
    ):
        return False
    if match.weights is not None and tags.weights not in match.weights:
        return False
    if match.regions is not None and tags.region not in match.regions:
        return False
    return match.models is None or model.name in match.models


def routing_problems(config: RoutingConfig, models: Iterable[str]) -> list[ConfigProblem]:
    """Names in the routing config that do not resolve, as ``routing.…`` problems.

    The policy refuses to start on the first; ``wardgate config check`` lists them all.
    """
    names = set(models)
    problems = []
    for logical, candidates in config.logical_models.items():
        where = f"routing.logical_models.{logical}"
        if logical in names:
            problems.append(ConfigProblem(where, f"logical model {logical!r} shadows a model"))
        if not candidates:
            problems.append(ConfigProblem(where, "lists no models"))
        for index, candidate in enumerate(candidates):
            if candidate not in names:
                problems.append(
                    ConfigProblem(f"{where}.{index}", f"unknown model {candidate!r}")
                )
    for index, rule in enumerate(config.rules or []):
        for name in rule.allow.models or []:
            if name not in names:
                problems.append(
                    ConfigProblem(
                        f"routing.rules.{index}.allow.models",
                        f"rule {rule.name!r}: unknown model {name!r}",
                    )
                )
    return problems


class RoutingPolicy:
    """Evaluates :class:`RoutingConfig` rules against the configured models."""

    def __init__(self, config: RoutingConfig, models: Sequence[ModelConfig]) -> None:
        self.config = config
        self.models: dict[str, ModelConfig] = {m.name: m for m in models}
        self.rules: list[RoutingRule] = config.effective_rules
        self._scopes: dict[tuple[str, ...], frozenset[str]] = {}
        self._decisions: dict[tuple[Any, ...], RoutingDecision] = {}
        self._check_names()

    def _check_names(self) -> None:
        problems = routing_problems(self.config, self.models)
        if problems:
            raise ConfigError(f"routing: {problems[0]}", problems=problems)

    def known(self, name: str) -> bool:
        return name in self.models or name in self.config.logical_models

    def require_known(self, name: str) -> None:
        """Raise :class:`ModelNotFound` unless ``name`` is a model or a logical model."""
        if not self.known(name):
            raise ModelNotFound(f"the model {name!r} does not exist")

    def resolve(self, requested: str) -> list[str]:
        """The candidate models for a requested name, in order."""
        if requested in self.config.logical_models:
            return list(self.config.logical_models[requested])
        self.require_known(requested)
        return [requested]

    def key_scope(self, key_models: Collection[str] | None) -> frozenset[str] | None:
        """The models an API key may reach: the names it lists, and the candidates of the
        logical models it lists. ``None`` (no restriction) for ``"*"`` or no key.

        A logical model grants its own candidates, and nothing else: a config fallback of a
        candidate is reachable only if the key names it too. Computed once per distinct list.
        """
        if key_models is None or "*" in key_models:
            return None
        names = tuple(key_models)
        scope = self._scopes.get(names)
        if scope is None:
            logical = self.config.logical_models
            reach = {n for n in names if n in self.models}
            for name in names:
                reach.update(logical.get(name, ()))
            if len(self._scopes) >= _SCOPE_CACHE_SIZE:
                self._scopes.clear()
            scope = self._scopes[names] = frozenset(reach)
        return scope

    def decide(
        self,
        requested_model: str,
        data_classes: Iterable[str] = (),
        tier: str | None = None,
        label: str | None = None,
        *,
        restrict_on_prem: bool = False,
        key_models: Collection[str] | None = None,
    ) -> RoutingDecision:
        """Which of the requested candidates may serve; raises RoutingRefused when none.

        ``key_models`` is the API key's model list: models outside :meth:`key_scope` are
        excluded like any rule would exclude them, so no failover can reach them.

        The decision depends on nothing but these inputs and the config, and most requests
        bring the same few (a model, no data class, the key's tier), so it is made once per
        distinct inputs and remembered (a decision is immutable and shared; refusals are
        not remembered, they are decided again each time).
        """
        label = label.strip().lower() if label else None
        classes = set(data_classes)
        key = (
            requested_model,
            frozenset(classes),
            tier,
            label,
            restrict_on_prem,
            None if key_models is None else tuple(key_models),
        )
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decide(requested_model, classes, tier, label, restrict_on_prem,
                                    key_models)  # fmt: skip
            if len(self._decisions) >= _DECISION_CACHE_SIZE:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def _decide(
        self,
        requested_model: str,
        classes: set[str],
        tier: str | None,
        label: str | None,
        restrict_on_prem: bool,
        key_models: Collection[str] | None,
    ) -> RoutingDecision:
        candidates = self.resolve(requested_model)
        scope = self.key_scope(key_models)
        rules = [
            r for r in self.rules if _matches_when(r.when, classes, tier, label, restrict_on_prem)
        ]
        if label is not None and label not in self.config.known_labels:
            if self.config.unknown_label == "refuse":
                raise RoutingRefused(
                    f"unknown data-class label {label!r}; known labels: "
                    f"{', '.join(self.config.known_labels)}",
                    code="unknown_data_class",
                )
            if self.config.unknown_label == "on_prem":
                rules.append(
                    RoutingRule(
                        name=UNKNOWN_LABEL_RULE,
                        when=RuleWhen(always=True),
                        allow=ModelMatch(deployment=["on_prem"]),
                    )
                )
        allowed: set[str] = set()
        pseudonymise: set[str] = set()
        excluded: dict[str, str] = {}
        for model in self.models.values():
            if scope is not None and model.name not in scope:
                excluded[model.name] = NOT_FOR_KEY
                continue
            verdict = self._evaluate(model, rules)
            if verdict is None:
                allowed.add(model.name)
            elif verdict == "pseudonymise":
                allowed.add(model.name)
                pseudonymise.add(model.name)
            else:
                excluded[model.name] = verdict
        chosen = [c for c in candidates if c in allowed]
        rule_names = tuple(r.name for r in rules)
        if not chosen:
            reasons = "; ".join(f"{c}: {excluded.get(c, 'not allowed')}" for c in candidates)
            record = {
                "requested": requested_model,
                "candidates": [],
                "reason": f"refused: {reasons}",
                "rules": list(rule_names),
                "data_classes": sorted(classes),
                "tier": tier,
                "label": label,
            }
            raise PolicyRefused(
                f"no model allowed by the routing policy can serve this request ({reasons})",
                decision=record,
            )
        reason = f"restricted by {', '.join(rule_names)}" if rules else "no routing rule applied"
        if chosen != candidates:
            reason += f"; skipped {', '.join(c for c in candidates if c not in allowed)}"
        return RoutingDecision(
            candidates=chosen,
            reason=reason,
            allowed=frozenset(allowed),
            key_scope=scope,
            pseudonymise=frozenset(pseudonymise & allowed),
            excluded={k: v for k, v in excluded.items() if k in candidates},
            requested=requested_model,
            rules=rule_names,
            data_classes=tuple(sorted(classes)),
            tier=tier,
            label=label,
        )

    @staticmethod
    def _evaluate(model: ModelConfig, rules: Sequence[RoutingRule]) -> str | None:
        """None: allowed; ``"pseudonymise"``: allowed once pseudonymised; else why excluded."""
        needs_pseudonym = False
        for rule in rules:
            if _matches_model(rule.allow, model):
                continue
            if (
                rule.vendor_if_pseudonymised
                and model.deployment == "vendor"
                and _matches_model(rule.allow, model, ignore_deployment=True)
            ):
                needs_pseudonym = True
                continue
            return f"excluded by rule {rule.name!r}"
        return "pseudonymise" if needs_pseudonym else None
