"""Test double of ComfyUI's top-level ``folder_paths.py``.

Mirrors ComfyUI 0.8.0 (618b803, 2026-01-07; same behaviour in 0.3.64) for the functions comfyui-moda uses:
directory getters/setters, ``models_dir``, ``folder_names_and_paths``, ``add_model_folder_path``,
``get_folder_paths``, ``get_filename_list`` (recursive, extension-filtered, sorted), ``get_full_path`` /
``get_full_path_or_raise``, the ``"name [output]"`` annotations (``get_annotated_filepath``,
``exists_annotated_filepath``), ``filter_files_content_types`` and ``get_save_image_path`` (counter after
``<prefix>_NNNNN_`` files, refuses paths outside the output folder).

Differences, on purpose: no directory is created at import and the file-list cache is left out (the real cache is
invalidated by folder mtimes, so results are the same). Tests re-point ``base_path``, ``models_dir``, the
``*_directory`` globals and ``folder_names_and_paths`` at a pytest tmp dir (see ``tests/comfy_harness.py``).
Written for comfyui-moda's tests; no ComfyUI code is copied.
"""
from __future__ import annotations

import logging
import mimetypes
import os
import time
from collections.abc import Collection

supported_pt_extensions: set[str] = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

base_path = os.path.dirname(os.path.realpath(__file__))
models_dir = os.path.join(base_path, "models")
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {
    "checkpoints": ([os.path.join(models_dir, "checkpoints")], supported_pt_extensions),
    "custom_nodes": ([os.path.join(base_path, "custom_nodes")], set()),
}
output_directory = os.path.join(base_path, "output")
temp_directory = os.path.join(base_path, "temp")
input_directory = os.path.join(base_path, "input")
user_directory = os.path.join(base_path, "user")

extension_mimetypes_cache = {"webp": "image", "fbx": "model"}


def map_legacy(folder_name: str) -> str:
    return {"unet": "diffusion_models", "clip": "text_encoders"}.get(folder_name, folder_name)


def set_output_directory(output_dir: str) -> None:
    global output_directory
    output_directory = output_dir


def set_temp_directory(temp_dir: str) -> None:
    global temp_directory
    temp_directory = temp_dir


def set_input_directory(input_dir: str) -> None:
    global input_directory
    input_directory = input_dir


def get_output_directory() -> str:
    return output_directory


def get_temp_directory() -> str:
    return temp_directory


def get_input_directory() -> str:
    return input_directory


def get_user_directory() -> str:
    return user_directory


def get_directory_by_type(type_name: str) -> str | None:
    return {"output": get_output_directory, "temp": get_temp_directory,
            "input": get_input_directory}.get(type_name, lambda: None)()


def filter_files_content_types(files: list[str], content_types: list[str]) -> list[str]:
    """Keep files whose MIME major type (guessed from the extension) is one of ``content_types``."""
    result = []
    for file in files:
        extension = file.split(".")[-1]
        if extension not in extension_mimetypes_cache:
            mime_type, _ = mimetypes.guess_type(file, strict=False)
            if not mime_type:
                continue
            extension_mimetypes_cache[extension] = mime_type.split("/")[0]
        if extension_mimetypes_cache[extension] in content_types:
            result.append(file)
    return result


def annotated_filepath(name: str) -> tuple[str, str | None]:
    for tag, getter in (("[output]", get_output_directory), ("[input]", get_input_directory),
                        ("[temp]", get_temp_directory)):
        if name.endswith(tag):
            return name[:-len(tag) - 1], getter()
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    name, base_dir = annotated_filepath(name)
    if base_dir is None:
        base_dir = default_dir if default_dir is not None else get_input_directory()
    return os.path.join(base_dir, name)


def exists_annotated_filepath(name) -> bool:
    name, base_dir = annotated_filepath(name)
    return os.path.exists(os.path.join(base_dir if base_dir is not None else get_input_directory(), name))


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    """Register a folder for a model key; a new key gets an empty extension set (no filtering)."""
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())
        return
    paths = folder_names_and_paths[folder_name][0]
    if full_folder_path in paths:
        if is_default and paths[0] != full_folder_path:
            paths.remove(full_folder_path)
            paths.insert(0, full_folder_path)
    elif is_default:
        paths.insert(0, full_folder_path)
    else:
        paths.append(full_folder_path)


def get_folder_paths(folder_name: str) -> list[str]:
    return folder_names_and_paths[map_legacy(folder_name)][0][:]


def recursive_search(directory: str, excluded_dir_names: list[str] | None = None) -> tuple[list[str], dict[str, float]]:
    if not os.path.isdir(directory):
        return [], {}
    excluded = excluded_dir_names or []
    result, dirs = [], {directory: os.path.getmtime(directory)}
    for dirpath, subdirs, filenames in os.walk(directory, followlinks=True, topdown=True):
        subdirs[:] = [d for d in subdirs if d not in excluded]
        result += [os.path.relpath(os.path.join(dirpath, f), directory) for f in filenames]
        for d in subdirs:
            dirs[os.path.join(dirpath, d)] = os.path.getmtime(os.path.join(dirpath, d))
    return result, dirs


def filter_files_extensions(files: Collection[str], extensions: Collection[str]) -> list[str]:
    return sorted(f for f in files if os.path.splitext(f)[-1].lower() in extensions or len(extensions) == 0)


def get_full_path(folder_name: str, filename: str) -> str | None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")      # no escaping the folder with ../
    for folder in folder_names_and_paths[folder_name][0]:
        full_path = os.path.join(folder, filename)
        if os.path.isfile(full_path):
            return full_path
        if os.path.islink(full_path):
            logging.warning("WARNING path %s exists but doesn't link anywhere, skipping.", full_path)
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    full_path = get_full_path(folder_name, filename)
    if full_path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return full_path


def get_filename_list(folder_name: str) -> list[str]:
    folders, extensions = folder_names_and_paths[map_legacy(folder_name)]
    found = set()
    for folder in folders:
        files, _ = recursive_search(folder, excluded_dir_names=[".git"])
        found.update(filter_files_extensions(files, extensions))
    return sorted(found)


def get_save_image_path(filename_prefix: str, output_dir: str, image_width=0,
                        image_height=0) -> tuple[str, str, int, str, str]:
    """-> (full_output_folder, filename, counter, subfolder, filename_prefix); counter = 1 + highest existing."""
    if "%" in filename_prefix:
        now = time.localtime()
        for key, value in (("%width%", image_width), ("%height%", image_height), ("%year%", now.tm_year),
                           ("%month%", f"{now.tm_mon:02}"), ("%day%", f"{now.tm_mday:02}"),
                           ("%hour%", f"{now.tm_hour:02}"), ("%minute%", f"{now.tm_min:02}"),
                           ("%second%", f"{now.tm_sec:02}")):
            filename_prefix = filename_prefix.replace(key, str(value))
    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
        err = ("**** ERROR: Saving image outside the output folder is not allowed."
               f"\n full_output_folder: {os.path.abspath(full_output_folder)}\n         output_dir: {output_dir}")
        logging.error(err)
        raise Exception(err)

    def counter_of(name: str) -> tuple[int, str]:
        n = len(os.path.basename(filename_prefix))
        try:
            digits = int(name[n + 1:].split("_")[0])
        except ValueError:
            digits = 0
        return digits, name[:n + 1]

    try:
        counter = max(c for c, prefix in map(counter_of, os.listdir(full_output_folder))
                      if os.path.normcase(prefix[:-1]) == os.path.normcase(filename) and prefix[-1:] == "_") + 1
    except ValueError:
        counter = 1
    except FileNotFoundError:
        os.makedirs(full_output_folder, exist_ok=True)
        counter = 1
    return full_output_folder, filename, counter, subfolder, filename_prefix
