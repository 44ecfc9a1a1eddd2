"""The diagnostic plug-in interface and the registry the node loads plug-ins from.

A plug-in is any object with ``info()``, ``diagnose()``, ``diagnose_async()``
and ``close()`` (see :class:`DiagnosticPlugin`), made by a factory
``create_plugin(options: Mapping) -> plug-in``. The registry maps a name from
the node's configuration to ``"module:factory"``; the module is imported only
when that plug-in is loaded, so importing ``diagnostics`` stays light and a
relay-only node never loads LiteRT. A hospital adds its own plug-in with
:func:`register_plugin` or by naming ``"package.module:factory"`` directly in
its configuration (configuration is trusted: it is the operator's file).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from diagnostics.errors import DiagnosisError
from diagnostics.result import DiagnosisResult
from diagnostics.risk import RiskFactors

if TYPE_CHECKING:  # numpy stays unimported until a plug-in loads
    from diagnostics.federated import ServedHead

DEFAULT_PLUGIN_NAME = "mobilenetv2"
RELAY_ONLY_NAMES = frozenset({"none"})

PLUGIN_REGISTRY: dict[str, str] = {
    "mobilenetv2": "diagnostics.mobilenetv2:create_plugin",
}


@runtime_checkable
class DiagnosticPlugin(Protocol):
    """What the node calls. ``diagnose`` is thread-safe; ``diagnose_async`` never blocks the loop."""

    name: str

    def info(self) -> dict[str, Any]:
        """Plug-in name and, per modality, model name, version, sha256, modality and threshold."""
        ...

    def diagnose(self, images: Mapping[str, bytes], risk: RiskFactors) -> DiagnosisResult:
        """Decode, check, preprocess, infer, fuse and draw heatmaps; raises DiagnosisError."""
        ...

    async def diagnose_async(self, images: Mapping[str, bytes], risk: RiskFactors) -> DiagnosisResult:
        """Same as :meth:`diagnose`, run off the event loop, batching concurrent requests."""
        ...

    def close(self) -> None:
        """Release worker threads; the plug-in is unusable afterwards."""
        ...


@runtime_checkable
class HeadServingPlugin(Protocol):
    """A plug-in that can serve an adopted federated head (optional; the default plug-in can)."""

    def serve_head(self, modality: str, served: ServedHead | None) -> None:
        """Use ``served`` for ``modality`` from the next diagnosis on; None: the built-in head again."""
        ...


def register_plugin(name: str, target: str) -> None:
    """Make ``name`` load ``target`` (``"package.module:factory"``)."""
    if ":" not in target:
        raise DiagnosisError("bad-config", f"plug-in target must be 'package.module:factory', got {target!r}")
    PLUGIN_REGISTRY[name.lower()] = target


def load_plugin(name: str | None, options: Mapping[str, Any] | None = None) -> DiagnosticPlugin | None:
    """Load the plug-in called ``name``; ``None`` or ``"none"`` means a relay-only node (returns None)."""
    if name is None or name.strip().lower() in RELAY_ONLY_NAMES:
        return None
    target = PLUGIN_REGISTRY.get(name.strip().lower()) or (name if ":" in name else None)
    if target is None:
        raise DiagnosisError("unknown-plugin", f"no diagnostic plug-in called {name!r}; known: "
                                               f"{sorted(PLUGIN_REGISTRY)}, 'none', or 'package.module:factory'")
    module_name, _, factory_name = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise DiagnosisError("unknown-plugin", f"cannot load plug-in {name!r} from {target!r}: {error}") from error
    plugin = factory(dict(options or {}))
    if not isinstance(plugin, DiagnosticPlugin):
        raise DiagnosisError("bad-plugin", f"{target} did not return a diagnostic plug-in "
                                           "(needs name, info, diagnose, diagnose_async, close)")
    return plugin
