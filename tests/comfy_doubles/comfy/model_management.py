"""Test double of ComfyUI's ``comfy/model_management.py`` as it behaves under ``--cpu``.

Mirrors ComfyUI 0.8.0 (618b803, 2026-01-07; same names in 0.3.64): devices are all the CPU (what ``--cpu`` gives;
``intermediate_device`` is the CPU unless ``--gpu-only``); the interrupt flag is set by
``interrupt_current_processing(True)`` (the server's ``/interrupt``) and consumed by
``throw_exception_if_processing_interrupted``, which clears it and raises ``InterruptProcessingException``;
``should_use_fp16`` / ``should_use_bf16`` answer False (a CPU device, or ``--cpu``, never gets half precision).
Model management keeps ``current_loaded_models`` (most recent first): ``load_models_gpu(models, ...)`` loads each
ModelPatcher on its ``load_device`` and registers it once; ``unload_all_models()`` (what ``/free`` and "Unload
models" run) detaches every registered patcher (back to its offload device, ON_DETACH callbacks) and forgets it.
Written for comfyui-moda's tests; no ComfyUI code is copied.
"""
import threading

import torch


def get_torch_device():
    return torch.device("cpu")


def intermediate_device():
    return torch.device("cpu")


def unet_offload_device():
    return torch.device("cpu")


def soft_empty_cache(force=False):
    pass


current_loaded_models = []          # the real list holds LoadedModel wrappers; here the patchers themselves


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                    force_full_load=False):
    for patcher in models:
        if patcher in current_loaded_models:
            current_loaded_models.remove(patcher)
        patcher.load(patcher.load_device)
        current_loaded_models.insert(0, patcher)


def loaded_models(only_currently_used=False):
    return list(current_loaded_models)


def unload_all_models():
    while current_loaded_models:
        current_loaded_models.pop().detach()


def should_use_fp16(device=None, model_params=0, prioritize_performance=True, manual_cast=False):
    return False


def should_use_bf16(device=None, model_params=0, prioritize_performance=True, manual_cast=False):
    return False


class InterruptProcessingException(Exception):
    pass


interrupt_processing_mutex = threading.RLock()
interrupt_processing = False


def interrupt_current_processing(value=True):
    global interrupt_processing
    with interrupt_processing_mutex:
        interrupt_processing = value


def processing_interrupted():
    with interrupt_processing_mutex:
        return interrupt_processing


def throw_exception_if_processing_interrupted():
    global interrupt_processing
    with interrupt_processing_mutex:
        if interrupt_processing:
            interrupt_processing = False
            raise InterruptProcessingException()
