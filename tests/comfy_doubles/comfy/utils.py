"""Test double of ComfyUI's ``comfy/utils.py``: the progress bar only.

Mirrors ComfyUI 0.8.0 (618b803, 2026-01-07; unchanged since 0.3.64). ``ProgressBar(total, node_id=None)`` keeps
``total``/``current`` and reports each change to the global hook installed with ``set_progress_bar_global_hook``
as ``hook(current, total, preview, node_id=node_id)``; ``update_absolute`` clamps the value to ``total``. In the
real server the hook also raises ``InterruptProcessingException`` when the user cancels. Written for
comfyui-moda's tests; no ComfyUI code is copied.
"""
PROGRESS_BAR_ENABLED = True
PROGRESS_BAR_HOOK = None


def set_progress_bar_enabled(enabled):
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = enabled


def set_progress_bar_global_hook(function):
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)
