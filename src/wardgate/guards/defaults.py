"""The shipped default pipeline: cheap deterministic guards first, learned detectors after.

Order matters: ``invisible_unicode`` strips zero-width and bidi characters before anything else
looks at the text (so a key or an address broken up by a zero-width space is still found), and
blocks smuggled payloads outright; ``size`` refuses floods before any model-based detector
spends CPU on them; the data guards only tag the request (``pii``, ``secrets``) for the routing
policy; the learned detectors (``prompt_injection``, ``harmful``) run last.

On output: tag characters are stripped, secrets are redacted, and the system-prompt canary and
n-gram overlap catch prompt leakage. PII on output is not on by default - answers routinely
repeat the user's own address back to them; add ``{type: pii, options: {action: redact}}``
where that is unwanted.
"""

from __future__ import annotations

from wardgate.guards.config import GuardsConfig, GuardSpec


def default_guards_config(*, learned: bool = True) -> GuardsConfig:
    """The default guards; ``learned=False`` leaves out the model-based detectors."""
    inputs = [
        GuardSpec(type="invisible_unicode"),
        GuardSpec(type="size"),
        GuardSpec(type="secrets"),
        GuardSpec(type="pii"),
    ]
    if learned:
        inputs += [GuardSpec(type="prompt_injection"), GuardSpec(type="harmful")]
    outputs = [
        GuardSpec(type="invisible_unicode"),
        GuardSpec(type="secrets"),
        GuardSpec(type="system_prompt_leak"),
    ]
    return GuardsConfig(input=inputs, output=outputs)
