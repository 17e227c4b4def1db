"""The contract every segmentation backbone in ``sap`` fulfils.

Pretraining, fine-tuning, the SSL baseline, the model zoo and inference never look inside a
network: they ask it three questions through :class:`SegmentationBackbone`.

1. *Which parameters are encoder, decoder and head?* SAP transfers encoder and decoder from
   the skeleton model, drops the head, and trains the three parts with different learning
   rates (paper: encoder 2e-6, decoder 1e-5). A subclass answers by naming the sub-modules
   that make up each part (``encoder_modules``, ``decoder_modules``, ``head_module``); the
   grouping is done on parameter *names*, so it works equally on ``named_parameters()`` and on
   the keys of a checkpoint's ``state_dict`` (buffers included).
2. *How do I put on a new head?* :meth:`SegmentationBackbone.replace_head` builds a freshly
   initialised head for another class count (10 skeleton labels -> 2 lesion labels).
3. *Which input sizes are valid?* ``spatial_multiple``: every spatial size must be divisible
   by it (a network that halves resolution five times needs multiples of 32).

Backbones whose encoder ends in one deepest feature map also answer a fourth: *what does the
encoder see?* :meth:`SegmentationBackbone.encode` returns that bottleneck (``bottleneck_channels``
features at ``1/spatial_multiple`` resolution), computed by encoder parameters only. The SSL
baseline trains on it and the benchmark's feature analysis (t-SNE) pools it.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import torch
from torch import nn

GROUP_NAMES: tuple[str, str, str] = ("encoder", "decoder", "head")
"""The parameter groups every backbone exposes, in the order they are returned."""


def _is_under(name: str, module_path: str) -> bool:
    """Whether parameter/buffer ``name`` lives inside the sub-module ``module_path``.

    Compared on whole path components so that ``net.encoder1`` does not swallow
    ``net.encoder10.weight``.
    """
    return name == module_path or name.startswith(module_path + ".")


def reject_unknown_kwargs(kwargs: Mapping[str, Any], accepted: Collection[str], owner: str) -> None:
    """Raise a ``TypeError`` naming every keyword argument ``owner`` does not accept.

    Python's own error only names the first offender and offers no suggestion; backbone
    kwargs usually come from YAML or a model recipe, where a typo is the common mistake.

    Args:
        kwargs: the keyword arguments that were given.
        accepted: the names ``owner`` understands.
        owner: who rejects them, as a user would recognise it (e.g. ``"backbone 'tiny_unet'"``).
    """
    unknown = sorted(set(kwargs) - set(accepted))
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(accepted), n=1)
        hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    raise TypeError(
        f"{owner} got unknown keyword argument(s) {', '.join(hints)}. "
        f"Accepted: {', '.join(sorted(accepted))}."
    )


class SegmentationBackbone(nn.Module, ABC):
    """A 3D segmentation network with named encoder, decoder and head.

    Subclasses set the three class attributes below, implement :meth:`forward_logits` and
    :meth:`new_head`, and call ``super().__init__(in_channels, out_channels,
    spatial_multiple=...)`` before creating sub-modules. Everything else (grouping, head swap,
    input checks) is done here, so a new architecture is one short file.

    Attributes:
        encoder_modules: dotted paths (relative to this module) of the sub-modules that form
            the encoder, e.g. ``("net.swinViT", "net.encoder1")``.
        decoder_modules: dotted paths of the decoder sub-modules.
        head_module: dotted path of the single sub-module that maps decoder features to
            ``out_channels`` logits; :meth:`replace_head` swaps exactly this module.
        name: the registered name the network was built under (set by
            :func:`sap.backbones.build_backbone`; empty when constructed directly).
        kwargs: the builder keyword arguments, registry defaults included, that rebuild this
            network with ``build_backbone(name, in_channels, out_channels, **kwargs)``.
        in_channels: number of input channels (``len(recipe.channels)``, 2 for T1 + b1000).
        out_channels: number of output logits per voxel (classes, background included).
        spatial_multiple: every spatial size (D, H, W, in voxels) of the input must be a
            multiple of this.
    """

    encoder_modules: tuple[str, ...] = ()
    decoder_modules: tuple[str, ...] = ()
    head_module: str = ""
    #: Feature channels of :meth:`encode`'s output; ``None`` when the backbone has no
    #: single bottleneck (then :meth:`encode` is not available).
    bottleneck_channels: int | None = None

    def __init__(self, in_channels: int, out_channels: int, *, spatial_multiple: int) -> None:
        super().__init__()
        for label, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{type(self).__name__}: {label} must be a positive integer, got {value!r}."
                )
        if isinstance(spatial_multiple, bool) or not isinstance(spatial_multiple, int):
            raise TypeError(f"spatial_multiple must be an int, got {spatial_multiple!r}")
        self.name: str = ""
        self.kwargs: dict[str, Any] = {}
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.spatial_multiple = spatial_multiple

    # ----------------------------------------------------------------- what subclasses write
    @abstractmethod
    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Compute logits ``[B, out_channels, D, H, W]`` from an already checked input."""

    @abstractmethod
    def new_head(self, out_channels: int) -> nn.Module:
        """A freshly initialised head producing ``out_channels`` logits.

        Only build the module here; :meth:`replace_head` installs it and moves it to the
        device and dtype of the old head.
        """

    def encode_features(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck of an already checked input; backbones with one override this."""
        raise NotImplementedError(
            f"Backbone {self.name or type(self).__name__!r} does not expose a bottleneck: "
            f"implement encode_features() and set bottleneck_channels to use it for "
            f"self-supervised pretraining or feature analysis."
        )

    # ----------------------------------------------------------------------- forward pass
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's deepest feature map ``[B, bottleneck_channels, d, h, w]`` of ``x``.

        Only encoder-group parameters take part, so whatever is learned through it transfers
        with ``transfer="encoder"``. ``x`` is checked as in :meth:`forward`.

        Example:
            >>> import torch
            >>> from sap.backbones import build_backbone
            >>> net = build_backbone("tiny_unet", in_channels=2, out_channels=2)
            >>> net.encode(torch.zeros(1, 2, 16, 16, 16)).shape == (1, net.bottleneck_channels, 4, 4, 4)
            True
        """
        self.check_input(x)
        return self.encode_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, out_channels, D, H, W]`` for an image ``x`` of shape ``[B, C, D, H, W]``."""
        self.check_input(x)
        return self.forward_logits(x)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` that says how to fix an input this network cannot take.

        Without it, a wrong size fails deep inside a skip connection with a message about
        tensor concatenation that does not mention the input at all.
        """
        who = f"Backbone {self.name or type(self).__name__!r}"
        if x.ndim != 5:
            raise ValueError(
                f"{who} expects a 5D tensor [batch, channels, D, H, W], got shape "
                f"{tuple(x.shape)}. Add the batch dimension with x[None] for a single image."
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{who} was built for {self.in_channels} input channel(s) but got "
                f"{x.shape[1]} (shape {tuple(x.shape)}). Check that the channel list of the "
                f"data matches the model recipe."
            )
        spatial = tuple(int(s) for s in x.shape[2:])
        bad = [s for s in spatial if s % self.spatial_multiple]
        if bad:
            fixed = tuple(-(-s // self.spatial_multiple) * self.spatial_multiple for s in spatial)
            raise ValueError(
                f"{who} needs every spatial size to be a multiple of {self.spatial_multiple} "
                f"voxels, got {spatial}. Use a patch size such as {fixed}, or pad the image "
                f"(sliding-window inference does this for you)."
            )

    # ------------------------------------------------------------------ parameter groups
    def module_groups(self) -> dict[str, tuple[str, ...]]:
        """The declared sub-module paths of each group, keyed by ``GROUP_NAMES``."""
        return {
            "encoder": tuple(self.encoder_modules),
            "decoder": tuple(self.decoder_modules),
            "head": (self.head_module,) if self.head_module else (),
        }

    def group_of(self, param_name: str) -> str:
        """The group (``"encoder"``, ``"decoder"`` or ``"head"``) that ``param_name`` belongs to.

        Args:
            param_name: a name from ``named_parameters()`` or a ``state_dict()`` key of this
                module (for a Lightning checkpoint, strip the task's ``"model."`` first).

        Raises:
            ValueError: the name lies in no declared group, or in more than one.
        """
        groups = [
            group
            for group, paths in self.module_groups().items()
            if any(_is_under(param_name, path) for path in paths)
        ]
        if len(groups) == 1:
            return groups[0]
        declared = ", ".join(f"{g}={list(p)}" for g, p in self.module_groups().items())
        problem = "no group" if not groups else f"several groups {groups}"
        raise ValueError(
            f"{param_name!r} of backbone {self.name or type(self).__name__!r} belongs to "
            f"{problem}; {type(self).__name__} declares {declared}. Fix encoder_modules / "
            f"decoder_modules / head_module so every parameter is in exactly one."
        )

    def named_parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """``(name, parameter)`` pairs of each group; together they are all parameters."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in GROUP_NAMES}
        problems = []
        for name, param in self.named_parameters():
            try:
                groups[self.group_of(name)].append((name, param))
            except ValueError as error:
                problems.append(str(error))
        if problems:
            shown = "\n  ".join(problems[:5])
            more = f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise ValueError(
                f"Parameters outside the encoder/decoder/head groups:\n  {shown}{more}"
            )
        return groups

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"encoder": [...], "decoder": [...], "head": [...]}``, a partition of ``parameters()``.

        Made for optimiser parameter groups with one learning rate each, e.g.
        ``[{"params": g["encoder"], "lr": 2e-6}, {"params": g["decoder"], "lr": 1e-5}, ...]``.
        """
        return {
            group: [param for _, param in pairs]
            for group, pairs in self.named_parameter_groups().items()
        }

    def parameter_counts(self) -> dict[str, int]:
        """Number of scalar parameters per group, for logs and model cards."""
        return {
            group: sum(param.numel() for param in params)
            for group, params in self.parameter_groups().items()
        }

    def check_groups(self) -> None:
        """Raise unless every parameter is in exactly one group and no group is empty.

        :func:`sap.backbones.build_backbone` calls this on every network it builds, so a
        mistake in a new backbone's declarations shows up at once, not as a silently
        untrained parameter or a learning rate applied to the wrong layers.
        """
        groups = self.named_parameter_groups()
        empty = [group for group, pairs in groups.items() if not pairs]
        if empty:
            raise ValueError(
                f"Backbone {self.name or type(self).__name__!r} has no parameters in group(s) "
                f"{empty}; declared {self.module_groups()}. Every backbone needs a trainable "
                f"encoder, decoder and head."
            )
        for path in self.module_groups()["head"]:
            self.get_submodule(path)  # raises AttributeError naming a mistyped head path

    # ------------------------------------------------------------------------- head swap
    def replace_head(self, out_channels: int) -> nn.Module:
        """Install a freshly initialised head with ``out_channels`` outputs and return it.

        Encoder and decoder are untouched. The new head is placed on the device and dtype of
        the old one and keeps its train/eval mode. Parameters of the old head are gone, so an
        optimiser created before this call must be rebuilt.
        """
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f"out_channels must be a positive integer, got {out_channels!r}.")
        if not self.head_module:
            raise NotImplementedError(f"{type(self).__name__} does not declare head_module.")
        old = self.get_submodule(self.head_module)
        new = self.new_head(out_channels)
        reference = next(_tensors(old), None)
        if reference is not None:
            new = new.to(device=reference.device, dtype=reference.dtype)
        new.train(old.training)
        parent_path, _, attribute = self.head_module.rpartition(".")
        parent = self.get_submodule(parent_path) if parent_path else self
        setattr(parent, attribute, new)
        self.out_channels = out_channels
        return new

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}, spatial_multiple={self.spatial_multiple}"
        )


def _tensors(module: nn.Module) -> Iterable[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()
