"""Find backbones by name: a decorator to register, a function to build, a listing with wildcards.

The registry is a small object rather than module-level dictionaries so tests and plugins
can make their own (:class:`BackboneRegistry`) without touching the shared one, and so every
failure is an explicit exception that says what to do instead of an ``assert``.

Example:
    >>> from sap.backbones import build_backbone, list_backbones
    >>> list_backbones("unet_resnet*")
    ['unet_resnet18', 'unet_resnet34', 'unet_resnet50']
    >>> net = build_backbone("tiny_unet", in_channels=2, out_channels=10)
    >>> net.name, net.kwargs["base_channels"], net.spatial_multiple
    ('tiny_unet', 8, 4)
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from sap.backbones.base import SegmentationBackbone, reject_unknown_kwargs

Builder = Callable[..., SegmentationBackbone]
"""Anything called as ``builder(in_channels, out_channels, **kwargs)`` that returns a
:class:`SegmentationBackbone` (a function or the subclass itself)."""

B = TypeVar("B", bound=Builder)

_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_RESERVED_KWARGS = frozenset({"in_channels", "out_channels"})


class UnknownBackboneError(LookupError):
    """No backbone is registered under the requested name."""


@dataclass(frozen=True)
class BackboneEntry:
    """What the registry knows about one backbone.

    Attributes:
        name: the registered name (what model recipes and configs refer to).
        builder: called as ``builder(in_channels, out_channels, **kwargs)``.
        description: one line for listings and error messages.
        default_kwargs: keyword arguments applied before the caller's own; they end up in
            ``net.kwargs`` and thus in every recipe, so a model states its settings explicitly.
    """

    name: str
    builder: Builder
    description: str = ""
    default_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Where the builder is defined, to tell people which file to look at."""
        module = getattr(self.builder, "__module__", "?")
        return f"{module}.{getattr(self.builder, '__qualname__', repr(self.builder))}"


class BackboneRegistry:
    """Names -> backbone builders.

    ``sap.backbones`` holds the shared instance behind :func:`register_backbone`,
    :func:`build_backbone` and :func:`list_backbones`; create your own to experiment without
    affecting it.
    """

    def __init__(self) -> None:
        self._entries: dict[str, BackboneEntry] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __repr__(self) -> str:
        return f"BackboneRegistry({sorted(self._entries)})"

    def register(
        self,
        name: str,
        *,
        description: str = "",
        default_kwargs: Mapping[str, Any] | None = None,
    ) -> Callable[[B], B]:
        """Decorator registering a builder (function or backbone class) under ``name``.

        Args:
            name: letters, digits, ``_``, ``.``, ``-``; no wildcards. Must not be taken.
            description: one line saying what the backbone is and when to use it.
            default_kwargs: settings recorded in ``net.kwargs`` unless the caller overrides
                them (e.g. the paper's ``feature_size=48`` for Swin UNETR).

        Returns:
            The decorator; it returns the builder unchanged.
        """
        if not isinstance(name, str) or not _VALID_NAME.match(name):
            raise ValueError(
                f"Backbone name {name!r} is not valid: use letters, digits, '_', '.', '-' "
                f"(starting with a letter or digit), e.g. 'unet_resnet18'."
            )
        defaults = dict(default_kwargs or {})
        reserved = sorted(_RESERVED_KWARGS & set(defaults))
        if reserved:
            raise ValueError(
                f"default_kwargs of backbone {name!r} must not set {reserved}: they are given "
                f"to every build_backbone() call."
            )

        def decorator(builder: B) -> B:
            if not callable(builder):
                raise TypeError(
                    f"Backbone {name!r}: the registered object {builder!r} is not callable."
                )
            if name in self._entries:
                existing = self._entries[name]
                raise ValueError(
                    f"A backbone named {name!r} is already registered (by {existing.source}). "
                    f"Pick another name, or unregister the old one first."
                )
            accepted = _accepted_kwargs(builder)
            if accepted is not None:
                reject_unknown_kwargs(defaults, accepted, f"default_kwargs of backbone {name!r}")
            self._entries[name] = BackboneEntry(
                name=name,
                builder=builder,
                description=description,
                default_kwargs=MappingProxyType(defaults),
            )
            return builder

        return decorator

    def unregister(self, name: str) -> BackboneEntry:
        """Remove ``name`` and return its entry (for tests and interactive re-definition)."""
        entry = self.entry(name)
        del self._entries[name]
        return entry

    def entry(self, name: str) -> BackboneEntry:
        """The registered entry for ``name``.

        Raises:
            UnknownBackboneError: with the closest registered names, if any.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownBackboneError(self._unknown_message(name)) from None

    def build(
        self, name: str, in_channels: int, out_channels: int, **kwargs: Any
    ) -> SegmentationBackbone:
        """Build the backbone ``name``; see :func:`build_backbone`."""
        entry = self.entry(name)
        merged = {**entry.default_kwargs, **kwargs}
        accepted = _accepted_kwargs(entry.builder)
        if accepted is not None:
            reject_unknown_kwargs(merged, accepted, f"Backbone {name!r}")
        net = entry.builder(in_channels, out_channels, **merged)
        if not isinstance(net, SegmentationBackbone):
            raise TypeError(
                f"The builder of backbone {name!r} ({entry.source}) returned "
                f"{type(net).__name__}, not a sap.backbones.SegmentationBackbone."
            )
        if (net.in_channels, net.out_channels) != (in_channels, out_channels):
            raise ValueError(
                f"Backbone {name!r} ({entry.source}) was asked for in_channels={in_channels}, "
                f"out_channels={out_channels} but reports {net.in_channels}, {net.out_channels}."
            )
        net.name = name
        net.kwargs = dict(merged)
        net.check_groups()
        return net

    def list(self, pattern: str | Sequence[str] = "*") -> list[str]:
        """Sorted registered names matching ``pattern`` (shell wildcards, case-sensitive).

        Args:
            pattern: one pattern such as ``"unet_*"`` or several; a name is listed if it
                matches any of them.
        """
        patterns = [pattern] if isinstance(pattern, str) else list(pattern)
        return sorted(
            name
            for name in self._entries
            if any(fnmatch.fnmatchcase(name, pat) for pat in patterns)
        )

    def _unknown_message(self, name: object) -> str:
        names = sorted(self._entries)
        text = str(name)
        by_lower = {n.lower(): n for n in names}
        close = [
            by_lower[m]
            for m in difflib.get_close_matches(text.lower(), list(by_lower), n=3, cutoff=0.5)
        ]
        close += [n for n in names if text and text.lower() in n.lower() and n not in close]
        hint = f" Did you mean {', '.join(repr(n) for n in close[:5])}?" if close else ""
        return (
            f"Unknown backbone {name!r}.{hint} Registered backbones: "
            f"{', '.join(names) or '(none)'}. Add one with @register_backbone(...) "
            f"(see CONTRIBUTING.md, 'Adding a backbone')."
        )


def _accepted_kwargs(builder: Builder) -> set[str] | None:
    """Keyword names ``builder`` takes besides the channels; ``None`` if it takes ``**kwargs``."""
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):
        return None
    parameters = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.name not in _RESERVED_KWARGS
    }


_DEFAULT_REGISTRY = BackboneRegistry()


def default_registry() -> BackboneRegistry:
    """The shared registry that :func:`register_backbone` and :func:`build_backbone` use."""
    return _DEFAULT_REGISTRY


def register_backbone(
    name: str, *, description: str = "", default_kwargs: Mapping[str, Any] | None = None
) -> Callable[[B], B]:
    """Register a backbone builder in the shared registry (decorator).

    Example:
        >>> from torch import nn
        >>> from sap.backbones import SegmentationBackbone, build_backbone, register_backbone
        >>> @register_backbone("doc_two_layer", description="smallest possible example",
        ...                    default_kwargs={"width": 4})
        ... class TwoLayer(SegmentationBackbone):
        ...     encoder_modules, decoder_modules, head_module = ("enc",), ("dec",), "head"
        ...     def __init__(self, in_channels, out_channels, width=4):
        ...         super().__init__(in_channels, out_channels, spatial_multiple=1)
        ...         self.enc = nn.Conv3d(in_channels, width, 3, padding=1)
        ...         self.dec = nn.Conv3d(width, width, 3, padding=1)
        ...         self.head = self.new_head(out_channels)
        ...     def new_head(self, out_channels):
        ...         return nn.Conv3d(self.dec.out_channels, out_channels, 1)
        ...     def forward_logits(self, x):
        ...         return self.head(self.dec(self.enc(x).relu()).relu())
        >>> build_backbone("doc_two_layer", 2, 3).kwargs
        {'width': 4}
        >>> _ = default_registry().unregister("doc_two_layer")
    """
    return _DEFAULT_REGISTRY.register(name, description=description, default_kwargs=default_kwargs)


def build_backbone(
    name: str, in_channels: int, out_channels: int, **kwargs: Any
) -> SegmentationBackbone:
    """Build a registered backbone.

    Args:
        name: registered name, see :func:`list_backbones`.
        in_channels: input channels (2 for T1 + b1000).
        out_channels: output classes, background included (10 skeleton, 2 lesion).
        **kwargs: builder settings; they override the entry's ``default_kwargs``.

    Returns:
        The network, with ``name`` and the complete ``kwargs`` recorded on it so that
        ``build_backbone(net.name, net.in_channels, net.out_channels, **net.kwargs)``
        rebuilds it. Its encoder/decoder/head groups have been checked.

    Raises:
        UnknownBackboneError: ``name`` is not registered (the message lists close names).
        TypeError: a keyword argument is not understood by the builder.
    """
    return _DEFAULT_REGISTRY.build(name, in_channels, out_channels, **kwargs)


def list_backbones(pattern: str | Sequence[str] = "*") -> list[str]:
    """Sorted names of registered backbones matching shell-style ``pattern`` (e.g. ``"unet*"``)."""
    return _DEFAULT_REGISTRY.list(pattern)


def backbone_entry(name: str) -> BackboneEntry:
    """The registry entry of ``name``: builder, description and default kwargs."""
    return _DEFAULT_REGISTRY.entry(name)
