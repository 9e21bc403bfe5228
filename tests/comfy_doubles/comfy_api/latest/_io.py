"""Test double of ComfyUI's V3 node API module ``comfy_api/latest/_io.py`` (reached as ``comfy_api.latest.io``).

Mirrors ComfyUI 0.8.0 (read from the upstream merge at 618b803, 2026-01-07; cross-checked with 0.3.64, a125cd8).
Written for comfyui-moda's tests; no ComfyUI code is copied. Only what the pack uses is here, but every name,
constructor signature, default and serialised key below matches the real module:

* ``comfytype`` / ``Custom`` / ``ComfyTypeI`` / ``ComfyTypeIO`` and the built-in types the pack touches (BOOLEAN,
  INT, FLOAT, STRING, COMBO, IMAGE, MASK, AUDIO, VIDEO, ``*``);
* ``Input`` / ``WidgetInput`` / ``Output`` with ``as_dict()`` giving the same keys as ``/object_info``;
* ``Schema`` (dataclass; ``validate``, ``finalize``, ``get_v1_info``), ``Hidden``, ``HiddenHolder``;
* ``ComfyNode`` class machinery used by the loader, ``/object_info`` and ``execution.py``: ``GET_SCHEMA``,
  ``INPUT_TYPES``, ``RETURN_TYPES``, ``RETURN_NAMES``, ``OUTPUT_TOOLTIPS``, ``OUTPUT_NODE``, ``CATEGORY``,
  ``DESCRIPTION``, ``GET_NODE_INFO_V1``, ``PREPARE_CLASS_CLONE``, ``EXECUTE_NORMALIZED(_ASYNC)``, ``FUNCTION``;
* ``NodeOutput`` (``args``, ``ui``, ``expand``, ``block_execution``, ``result``, ``from_dict``).

Behaviour differences from 0.3.64 worth knowing (the double follows 0.8.0): ``Output.display_name`` defaults to
the output id (0.3.64 leaves it ``None``); inputs gained ``raw_link``/``extra_dict``; 0.3.64 wraps io types in a
comma-aware ``str`` subclass.
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, TypedDict

import torch


def _pruned(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class classproperty:
    """Read-only class-level property (as ``comfy_api.internal.classproperty``)."""

    def __init__(self, fget):
        self.fget = fget

    def __get__(self, obj, owner):
        return self.fget(owner)


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


# ---------------------------------------------------------------- types
class _ComfyType(ABC):
    Type = Any
    io_type: str = None


def _subclass_copy(cls: type | None) -> type | None:
    if cls is None:
        return None
    body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    return type(cls.__name__, (cls,), body)


def comfytype(io_type: str, **kwargs):
    """Class decorator binding ``io_type`` to a ComfyType and to its ``Input``/``Output`` classes."""
    def decorate(cls):
        if issubclass(cls, _ComfyType):
            new_cls = cls
            for name in ("Input", "Output"):
                if hasattr(new_cls, name):
                    setattr(new_cls, name, _subclass_copy(getattr(new_cls, name)))
        else:
            body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            new_cls = type(cls.__name__, (cls, ComfyTypeIO), body)
        new_cls.io_type = io_type
        for name in ("Input", "Output"):
            if getattr(new_cls, name, None) is not None:
                getattr(new_cls, name).Parent = new_cls
        return new_cls
    return decorate


def Custom(io_type: str) -> type[ComfyTypeIO]:
    """A ComfyType for a custom socket type string (e.g. ``io.Custom("MODA_REPR")``)."""
    @comfytype(io_type=io_type)
    class CustomComfyType(ComfyTypeIO):
        ...
    return CustomComfyType


class _IO_V3:
    Parent: _ComfyType = None

    def __init__(self):
        pass

    def validate(self):
        pass

    @property
    def io_type(self):
        return self.Parent.io_type

    @property
    def Type(self):
        return self.Parent.Type


class Input(_IO_V3):
    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 extra_dict=None, raw_link: bool = None):
        super().__init__()
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict if extra_dict is not None else {}
        self.rawLink = raw_link

    def as_dict(self):
        return _pruned({"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip,
                        "lazy": self.lazy, "rawLink": self.rawLink}) | _pruned(self.extra_dict)

    def get_io_type(self):
        return self.io_type

    def get_all(self) -> list[Input]:
        return [self]


class WidgetInput(Input):
    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 default: Any = None, socketless: bool = None, widget_type: str = None, force_input: bool = None,
                 extra_dict=None, raw_link: bool = None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def as_dict(self):
        return super().as_dict() | _pruned({"default": self.default, "socketless": self.socketless,
                                            "widgetType": self.widget_type, "forceInput": self.force_input})

    def get_io_type(self):
        return self.widget_type if self.widget_type is not None else super().get_io_type()


class Output(_IO_V3):
    def __init__(self, id: str = None, display_name: str = None, tooltip: str = None, is_output_list=False):
        self.id = id
        self.display_name = display_name if display_name else id
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    def as_dict(self):
        return _pruned({"display_name": self.display_name if self.display_name else self.id,
                        "tooltip": self.tooltip, "is_output_list": self.is_output_list})

    def get_io_type(self):
        return self.io_type


class ComfyTypeI(_ComfyType):
    class Input(Input):
        ...


class ComfyTypeIO(ComfyTypeI):
    class Output(Output):
        ...


@comfytype(io_type="BOOLEAN")
class Boolean(ComfyTypeIO):
    Type = bool

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, default: bool = None, label_on: str = None, label_off: str = None,
                     socketless: bool = None, force_input: bool = None, extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.label_on = label_on
            self.label_off = label_off

        def as_dict(self):
            return super().as_dict() | _pruned({"label_on": self.label_on, "label_off": self.label_off})


@comfytype(io_type="INT")
class Int(ComfyTypeIO):
    Type = int

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, default: int = None, min: int = None, max: int = None, step: int = None,
                     control_after_generate: bool = None, display_mode: NumberDisplay = None,
                     socketless: bool = None, force_input: bool = None, extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.min, self.max, self.step = min, max, step
            self.control_after_generate = control_after_generate
            self.display_mode = display_mode

        def as_dict(self):
            return super().as_dict() | _pruned({
                "min": self.min, "max": self.max, "step": self.step,
                "control_after_generate": self.control_after_generate,
                "display": self.display_mode.value if self.display_mode else None})


@comfytype(io_type="FLOAT")
class Float(ComfyTypeIO):
    Type = float

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, default: float = None, min: float = None, max: float = None,
                     step: float = None, round: float = None, display_mode: NumberDisplay = None,
                     socketless: bool = None, force_input: bool = None, extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.min, self.max, self.step, self.round = min, max, step, round
            self.display_mode = display_mode

        def as_dict(self):
            return super().as_dict() | _pruned({"min": self.min, "max": self.max, "step": self.step,
                                                "round": self.round, "display": self.display_mode})


@comfytype(io_type="STRING")
class String(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, multiline=False, placeholder: str = None, default: str = None,
                     dynamic_prompts: bool = None, socketless: bool = None, force_input: bool = None,
                     extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.multiline = multiline
            self.placeholder = placeholder
            self.dynamic_prompts = dynamic_prompts

        def as_dict(self):
            return super().as_dict() | _pruned({"multiline": self.multiline, "placeholder": self.placeholder,
                                                "dynamicPrompts": self.dynamic_prompts})


@comfytype(io_type="COMBO")
class Combo(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        Type = str

        def __init__(self, id: str, options: list[str] | list[int] | type[Enum] = None, display_name: str = None,
                     optional=False, tooltip: str = None, lazy: bool = None, default: str | int | Enum = None,
                     control_after_generate: bool = None, upload: UploadType = None,
                     image_folder: FolderType = None, remote=None, socketless: bool = None, extra_dict=None,
                     raw_link: bool = None):
            if isinstance(options, type) and issubclass(options, Enum):
                options = [member.value for member in options]
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, None,
                             extra_dict, raw_link)
            self.multiselect = False
            self.options = options
            self.control_after_generate = control_after_generate
            self.upload = upload
            self.image_folder = image_folder
            self.remote = remote

        def as_dict(self):
            return super().as_dict() | _pruned({
                "multiselect": self.multiselect, "options": self.options,
                "control_after_generate": self.control_after_generate,
                **({self.upload.value: True} if self.upload is not None else {}),
                "image_folder": self.image_folder.value if self.image_folder else None,
                "remote": self.remote.as_dict() if self.remote else None})

    class Output(Output):
        def __init__(self, id: str = None, display_name: str = None, options: list[str] = None,
                     tooltip: str = None, is_output_list=False):
            super().__init__(id, display_name, tooltip, is_output_list)
            self.options = options if options is not None else []


@comfytype(io_type="IMAGE")
class Image(ComfyTypeIO):
    Type = torch.Tensor


@comfytype(io_type="MASK")
class Mask(ComfyTypeIO):
    Type = torch.Tensor


@comfytype(io_type="AUDIO")
class Audio(ComfyTypeIO):
    class AudioDict(TypedDict):
        waveform: torch.Tensor
        sampler_rate: int        # sic: the real TypedDict misspells it; producers use "sample_rate"
    Type = AudioDict


@comfytype(io_type="VIDEO")
class Video(ComfyTypeIO):
    ...


@comfytype(io_type="*")
class AnyType(ComfyTypeIO):
    Type = Any


# ---------------------------------------------------------------- hidden inputs
class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    def __init__(self, unique_id: str, prompt: Any, extra_pnginfo: Any, dynprompt: Any,
                 auth_token_comfy_org: str, api_key_comfy_org: str, **kwargs):
        self.unique_id = unique_id
        self.prompt = prompt
        self.extra_pnginfo = extra_pnginfo
        self.dynprompt = dynprompt
        self.auth_token_comfy_org = auth_token_comfy_org
        self.api_key_comfy_org = api_key_comfy_org

    def __getattr__(self, key: str):
        return None

    @classmethod
    def from_dict(cls, d: dict | None):
        d = d or {}
        return cls(**{h.name: d.get(h, None) for h in Hidden})

    @classmethod
    def from_v3_data(cls, v3_data: dict | None) -> HiddenHolder:
        return cls.from_dict(v3_data["hidden_inputs"] if v3_data else None)


# ---------------------------------------------------------------- schema
@dataclass
class NodeInfoV1:
    input: dict = None
    input_order: dict[str, list[str]] = None
    output: list[str] = None
    output_is_list: list[bool] = None
    output_name: list[str] = None
    output_tooltips: list[str] = None
    output_matchtypes: list[str] = None
    name: str = None
    display_name: str = None
    description: str = None
    python_module: Any = None
    category: str = None
    output_node: bool = None
    deprecated: bool = None
    experimental: bool = None
    api_node: bool = None


@dataclass
class Schema:
    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list[Input] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self):
        """Input ids and output ids must each be unique (raises ValueError listing the duplicates)."""
        input_ids = [i.id for inp in self.inputs for i in inp.get_all()]
        output_ids = [o.id for o in self.outputs]
        issues = []
        for kind, ids in (("Input", input_ids), ("Output", output_ids)):
            dupes = [item for item, count in Counter(ids).items() if count > 1]
            if dupes:
                issues.append(f"{kind} ids must be unique, but {dupes} are not.")
        if issues:
            raise ValueError("\n".join(issues))
        for item in [*self.inputs, *self.outputs]:
            item.validate()

    def finalize(self):
        """Output nodes get hidden prompt + extra_pnginfo; outputs without ids get ``_<i>_<TYPE>_``."""
        self.inputs = self.inputs or []
        self.outputs = self.outputs or []
        self.hidden = self.hidden or []
        needed = []
        if self.is_api_node:
            needed += [Hidden.auth_token_comfy_org, Hidden.api_key_comfy_org]
        if self.is_output_node:
            needed += [Hidden.prompt, Hidden.extra_pnginfo]
        for h in needed:
            if h not in self.hidden:
                self.hidden.append(h)
        for i, output in enumerate(self.outputs):
            if output.id is None:
                output.id = f"_{i}_{output.io_type}_"

    def get_v1_info(self, cls) -> NodeInfoV1:
        inputs = create_input_dict_v1(self.inputs)
        for h in self.hidden or []:
            inputs.setdefault("hidden", {})[h.name] = (h.value,)
        outputs = self.outputs or []
        return NodeInfoV1(
            input=inputs,
            input_order={key: list(value) for key, value in inputs.items()},
            output=[o.io_type for o in outputs],
            output_is_list=[o.is_output_list for o in outputs],
            output_name=[o.display_name if o.display_name else o.io_type for o in outputs],
            output_tooltips=[o.tooltip if o.tooltip else None for o in outputs],
            output_matchtypes=None,
            name=self.node_id, display_name=self.display_name, category=self.category,
            description=self.description, output_node=self.is_output_node, deprecated=self.is_deprecated,
            experimental=self.is_experimental, api_node=self.is_api_node,
            python_module=getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"))


def add_to_dict_v1(i: Input, d: dict):
    options = i.as_dict()
    options.pop("optional", None)
    d.setdefault("optional" if i.optional else "required", {})[i.id] = (i.get_io_type(), options)


def create_input_dict_v1(inputs: list[Input]) -> dict:
    d = {"required": {}}
    for i in inputs:
        add_to_dict_v1(i, d)
    return d


# ---------------------------------------------------------------- nodes
class ComfyNode:
    """Base class of V3 nodes. Define ``define_schema`` and ``execute`` as classmethods; no instance state."""

    RELATIVE_PYTHON_MODULE = None
    SCHEMA = None
    hidden: HiddenHolder = None

    @classmethod
    @abstractmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    @abstractmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError

    @classmethod
    def validate_inputs(cls, **kwargs) -> bool | str:
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> Any:
        raise NotImplementedError

    @classmethod
    def check_lazy_status(cls, **kwargs) -> list[str]:
        return [name for name in kwargs if kwargs[name] is None]

    @classmethod
    def GET_BASE_CLASS(cls):
        return ComfyNode

    @classmethod
    def VALIDATE_CLASS(cls):
        for name in ("define_schema", "execute"):
            if getattr(cls, name).__func__ is getattr(ComfyNode, name).__func__:
                raise Exception(f"No {name} function was defined for node class {cls.__name__}.")

    @classproperty
    def FUNCTION(cls):  # noqa: N802
        return "EXECUTE_NORMALIZED_ASYNC" if inspect.iscoroutinefunction(cls.execute) else "EXECUTE_NORMALIZED"

    @classmethod
    def FINALIZE_SCHEMA(cls) -> Schema:
        schema = cls.define_schema()
        schema.finalize()
        return schema

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        cls.VALIDATE_CLASS()
        schema = cls.FINALIZE_SCHEMA()
        schema.validate()
        cls.SCHEMA = schema
        return schema

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict]:
        return cls.FINALIZE_SCHEMA().get_v1_info(cls).input

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict[str, Any]:
        return asdict(cls.GET_SCHEMA().get_v1_info(cls))

    # V1-compatible class attributes, read by execution.py and the server
    @classproperty
    def RETURN_TYPES(cls):  # noqa: N802
        return [o.io_type for o in cls.GET_SCHEMA().outputs]

    @classproperty
    def RETURN_NAMES(cls):  # noqa: N802
        return [o.display_name if o.display_name else o.io_type for o in cls.GET_SCHEMA().outputs]

    @classproperty
    def OUTPUT_TOOLTIPS(cls):  # noqa: N802
        return [o.tooltip if o.tooltip else None for o in cls.GET_SCHEMA().outputs]

    @classproperty
    def OUTPUT_IS_LIST(cls):  # noqa: N802
        return [o.is_output_list for o in cls.GET_SCHEMA().outputs]

    @classproperty
    def OUTPUT_NODE(cls):  # noqa: N802
        return cls.GET_SCHEMA().is_output_node

    @classproperty
    def INPUT_IS_LIST(cls):  # noqa: N802
        return cls.GET_SCHEMA().is_input_list

    @classproperty
    def NOT_IDEMPOTENT(cls):  # noqa: N802
        return cls.GET_SCHEMA().not_idempotent

    @classproperty
    def CATEGORY(cls):  # noqa: N802
        return cls.GET_SCHEMA().category

    @classproperty
    def DESCRIPTION(cls):  # noqa: N802
        return cls.GET_SCHEMA().description

    @classmethod
    def PREPARE_CLASS_CLONE(cls, v3_data: dict | None) -> type[ComfyNode]:
        """A shallow clone of the class with ``hidden`` set, as execution.py makes before every call."""
        clone = type(f"{cls.__name__}Clone", (cls,) + cls.__bases__, dict(cls.__dict__))
        clone.hidden = HiddenHolder.from_v3_data(v3_data)
        return clone

    @classmethod
    def _normalize(cls, returned) -> NodeOutput:
        if returned is None:
            returned = NodeOutput()
        elif isinstance(returned, tuple):
            returned = NodeOutput(*returned)
        elif isinstance(returned, dict):
            returned = NodeOutput.from_dict(returned)
        elif not isinstance(returned, NodeOutput):
            raise Exception(f"Invalid return type from node: {type(returned)}")
        if returned.expand is not None and not cls.SCHEMA.enable_expand:
            raise Exception(f"Node {cls.__name__} is not expandable, but expand included in NodeOutput; "
                            "developer should set enable_expand=True on node's Schema to allow this.")
        return returned

    @classmethod
    def EXECUTE_NORMALIZED(cls, *args, **kwargs) -> NodeOutput:
        return cls._normalize(cls.execute(*args, **kwargs))

    @classmethod
    async def EXECUTE_NORMALIZED_ASYNC(cls, *args, **kwargs) -> NodeOutput:
        return cls._normalize(await cls.execute(*args, **kwargs))


class NodeOutput:
    """What ``execute`` returns: outputs in schema order, plus optional ``ui`` (a _UIOutput or dict)."""

    def __init__(self, *args: Any, ui: _UIOutput | dict = None, expand: dict = None, block_execution: str = None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self):
        return self.args if len(self.args) > 0 else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeOutput:
        return cls(*data.get("result", ()), ui=data.get("ui"), expand=data.get("expand"))

    def __getitem__(self, index) -> Any:
        return self.args[index]


class _UIOutput(ABC):
    def __init__(self):
        pass

    @abstractmethod
    def as_dict(self) -> dict:
        ...
