"""Test double of ComfyUI's ``comfy/model_management.py`` as it behaves under ``--cpu``.

Mirrors ComfyUI 0.8.0 (618b803, 2026-01-07; same names in 0.3.64): devices are all the CPU (what ``--cpu`` gives;
``intermediate_device`` is the CPU unless ``--gpu-only``); the interrupt flag is set by
``interrupt_current_processing(True)`` (the server's ``/interrupt``) and consumed by
``throw_exception_if_processing_interrupted``, which clears it and raises ``InterruptProcessingException``;
``should_use_fp16`` / ``should_use_bf16`` answer False (a CPU device, or ``--cpu``, never gets half precision).
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
