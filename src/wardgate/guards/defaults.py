"""The shipped default pipeline: cheap deterministic guards first, learned detectors after.

Order matters: ``invisible_unicode`` strips zero-width and bidi characters before anything else
looks at the text (so a key or an address broken up by a zero-width space is still found), and
blocks smuggled payloads outright; ``size`` refuses floods before any model-based detector
spends CPU on them; the data guards only tag the request (``pii``, ``secrets``) for the routing
policy; the learned detectors (``prompt_injection``, ``harmful``) run last.

On output: tag characters are stripped, secrets and PII are redacted (PII from documents or
the system prompt must not leak; pseudonymised placeholders are restored after the output
guards, so vendor answers still carry the client's own data), and the system-prompt canary and
n-gram overlap catch prompt leakage, and ``exfiltration`` refuses URLs shaped to carry data
out (in answers and in tool-call arguments; list your own hosts in its ``allow_hosts``).
Remove the output ``pii`` entry where answers should repeat addresses back to users of
on-prem models.

``prompt_injection`` scans user and tool messages and documents, not the operator's system
prompt (measured: scanning it refused half of harmless requests in application contexts).
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
        inputs += [
            # Injections arrive in what users and tools supply (and in documents, always
            # scanned); the operator's own system prompt is full of instruction-like rules, and
            # scanning it refused half of harmless requests in application contexts
            # (docs/redteam.md).
            GuardSpec(type="prompt_injection", roles=["user", "tool"]),
            # Moderation judges what the user asks for. The operator's system prompt, tool
            # results and RAG documents are context, not requests: a billing bot's prompt
            # talks about refunds and chargebacks, a news document about attacks.
            GuardSpec(type="harmful", roles=["user"], documents=False),
        ]
    outputs = [
        GuardSpec(type="invisible_unicode"),
        GuardSpec(type="secrets"),
        # PII the model read from its context must not leak into answers; placeholders from
        # pseudonymisation are restored after this guard, so a client's own data comes back.
        GuardSpec(type="pii"),
        GuardSpec(type="system_prompt_leak"),
        # URLs that carry an encoded payload or a long query to an unlisted host: the shape
        # of an injected agent exfiltrating through a tool call or a markdown image.
        GuardSpec(type="exfiltration"),
    ]
    return GuardsConfig(input=inputs, output=outputs)
