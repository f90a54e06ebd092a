"""Find the guard class a ``type:`` names: built-ins, then the ``wardgate.guards`` entry point.

Built-ins are listed here by module, not imported, so a guard whose optional dependency is
missing (Presidio, a detector's weights) only fails when someone configures it, and then with
a :class:`~wardgate.errors.ConfigError` that says what is missing. The internal table also means
the shipped guards work from a source checkout that was never ``pip install``-ed (entry points
only exist after installation).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from importlib.metadata import entry_points

from wardgate.errors import ConfigError
from wardgate.guards.base import Guard, GuardClass

ENTRY_POINT_GROUP = "wardgate.guards"

#: type name -> module that defines a Guard subclass with that ``type_name``.
BUILTIN_GUARDS: Mapping[str, str] = {
    "invisible_unicode": "wardgate.guards.unicode",
    "size": "wardgate.guards.size",
    "pii": "wardgate.guards.pii",
    "secrets": "wardgate.guards.secrets",
    "system_prompt_leak": "wardgate.guards.leakage",
    "llm_judge": "wardgate.guards.llm_judge",
    "prompt_injection": "wardgate.guards.injection",
    "harmful": "wardgate.guards.harmful",
    "exfiltration": "wardgate.guards.exfiltration",
    "output_moderation": "wardgate.guards.output_moderation",
}


class GuardRegistry:
    """Resolves type names to guard classes; ``extra`` adds or overrides types (tests)."""

    def __init__(self, extra: Mapping[str, GuardClass] | None = None) -> None:
        self._extra: dict[str, GuardClass] = dict(extra or {})

    def register(self, cls: GuardClass, type_name: str | None = None) -> None:
        name = type_name or cls.type_name
        if not name:
            raise ConfigError(f"{cls.__name__} has no type_name")
        self._extra[name] = cls

    def known(self) -> list[str]:
        names = set(self._extra) | set(BUILTIN_GUARDS)
        names |= {e.name for e in entry_points(group=ENTRY_POINT_GROUP)}
        return sorted(names)

    def resolve(self, type_name: str) -> GuardClass:
        if type_name in self._extra:
            return self._extra[type_name]
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name == type_name:
                try:
                    loaded = entry.load()
                except Exception as exc:
                    raise ConfigError(
                        f"guard {type_name!r}: entry point {entry.value!r} failed to load: {exc}"
                    ) from exc
                return _check_class(type_name, loaded)
        module_name = BUILTIN_GUARDS.get(type_name)
        if module_name is None:
            raise ConfigError(
                f"unknown guard type {type_name!r}; known types: {', '.join(self.known())}"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"guard {type_name!r} is configured but its module {module_name!r} "
                f"cannot be imported: {exc}"
            ) from exc
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Guard) and obj.type_name == type_name:
                return obj
        raise ConfigError(f"module {module_name!r} defines no guard with type_name {type_name!r}")


def _check_class(type_name: str, obj: object) -> GuardClass:
    if not (inspect.isclass(obj) and issubclass(obj, Guard)):
        raise ConfigError(f"guard {type_name!r}: entry point is not a wardgate Guard subclass")
    return obj
