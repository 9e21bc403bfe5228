"""The pack's shell: install metadata, entry point outside ComfyUI, README <-> CI command."""
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    return re.findall(r"```(?:bash|sh)\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [line.split("#")[0].strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    ci_lines = [line for line in ci_lines if line]
    test_command = ci_lines[-1]
    assert "pytest" in test_command
    blocks = _readme_commands()
    assert any(test_command in block.splitlines() for block in blocks), \
        f"README.md must show the CI test command verbatim: {test_command!r}"
    assert ci_lines.index("python -m pip install torch==2.13.0") < ci_lines.index('python -m pip install -e ".[test]"')


def test_requirements_have_no_torch_and_no_numpy_pin():
    lines = [ln.split("#")[0].strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    names = [re.split(r"[<>=!~\[ ]", ln)[0].lower() for ln in lines if ln]
    assert not {"torch", "torchvision", "torchaudio"} & set(names)
    assert "numpy" in [ln for ln in lines if ln]                      # present and unpinned
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = {re.split(r"[<>=!~\[ ]", d)[0].lower() for d in project["project"]["dependencies"]}
    assert set(names) <= runtime, "pyproject dependencies must mirror requirements.txt"
    assert project["project"]["scripts"]["moda"] == "moda_core.cli:main"
    assert "PublisherId" in project["tool"]["comfy"] and project["project"]["urls"]["Repository"]


def test_pack_imports_outside_comfyui_without_entry_point():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('moda_pack', {str(REPO / '__init__.py')!r},"
        f" submodule_search_locations=[{str(REPO)!r}])\n"
        "module = importlib.util.module_from_spec(spec); sys.modules['moda_pack'] = module\n"
        "spec.loader.exec_module(module)\n"
        "assert module.comfy_entrypoint is None\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths')]\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_moda_core_never_imports_comfyui():
    code = (
        "import pkgutil, importlib, sys, moda_core\n"
        "for info in pkgutil.walk_packages(moda_core.__path__, 'moda_core.'):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths', 'server')]\n"
        "assert not bad, bad\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    source = "\n".join(p.read_text() for p in (REPO / "moda_core").rglob("*.py"))
    assert not re.search(r"^\s*(from|import)\s+(comfy|comfy_api|folder_paths)\b", source, flags=re.M)


def test_cli_help_lists_subcommands():
    result = subprocess.run([sys.executable, "-m", "moda_core.cli", "--help"], capture_output=True, text=True,
                            cwd=str(REPO))
    assert result.returncode == 0
    commands = ["info", "preview", "animate", "render", "convert", "prepare", "edit", "bench", "eval", "train",
                "quickstart", "protocol"]
    for command in commands:
        assert command in result.stdout
    from moda_core.cli import build_parser
    parser = build_parser()
    for command in commands:                       # every sub-command's help renders (argparse % formatting)
        with pytest.raises(SystemExit) as done:
            parser.parse_args([command, "--help"])
        assert done.value.code == 0


def test_every_python_package_is_listed_in_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "moda_core").rglob("*.py")
             if "__pycache__" not in p.parts}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"


def test_pack_imports_as_a_plain_module_too():
    """pytest imports the root __init__.py without a package when the clone's folder is e.g. 'comfyui-moda'."""
    code = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('__init__', {str(REPO / '__init__.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert module.comfy_entrypoint is None\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
