"""Test double of ComfyUI's ``comfy/model_patcher.py``: ``ModelPatcher`` as model management drives it.

Mirrors ComfyUI 0.8.0 (618b803) for a plain ``nn.Module`` without weight patches: the constructor signature
``ModelPatcher(model, load_device, offload_device, size=0, weight_inplace_update=False)``; ``model_size()`` (bytes
of the state dict); ``add_callback(call_type, callback)``; ``load(device)`` moves the module to ``device``;
``detach(unpatch_all=True)`` moves it to ``offload_device`` and calls the ON_DETACH callbacks with
``(patcher, unpatch_all)``. Written for comfyui-moda's tests; no ComfyUI code is copied.
"""
from comfy.patcher_extension import CallbacksMP


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.size = size
        self.callbacks = {}

    def model_size(self):
        if self.size <= 0:
            self.size = sum(t.nbytes for t in self.model.state_dict().values())
        return self.size

    def add_callback(self, call_type, callback):
        self.callbacks.setdefault(call_type, []).append(callback)

    def load(self, device_to=None):
        self.model.to(device_to or self.load_device)

    def detach(self, unpatch_all=True):
        self.model.to(self.offload_device)
        for callback in self.callbacks.get(CallbacksMP.ON_DETACH, []):
            callback(self, unpatch_all)
        return self.model
