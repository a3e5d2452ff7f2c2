"""Core commands: plan, convert, push, models, env."""
from __future__ import annotations

import importlib.metadata
import platform
import shlex
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..plans import Plan, cache_bytes, human_bytes, human_tokens, new_parameters, parse_layer_list, parse_tokens

RATIO_HELP = "LINEAR:FULL layers, e.g. 3:1 (1:0 replaces every layer). Full layers are evenly spaced, the last one kept."
DEFAULT_CONTEXTS = "8K,128K,1M"


def _console():
    from . import console
    return console


def _make_plan(model, ratio, full_layers, mixer, window, plan_file) -> Plan:
    from .. import api
    from ..errors import UserError
    if sum(x is not None for x in (ratio, full_layers, plan_file)) > 1:
        raise UserError("give only one of --ratio, --full-layers and --plan")
    if ratio is None and full_layers is None and plan_file is None:
        ratio = "3:1"
    return api.plan(model, ratio=ratio, full_layers=parse_layer_list(full_layers) if full_layers else None,
                    mixer=mixer, window=window, plan_file=plan_file)


def plan_tables(shapes, plan: Plan, contexts: list[int]) -> tuple[Table, Table]:
    layers = Table(title="Layer map", show_lines=False)
    layers.add_column("layer", justify="right")
    layers.add_column("mixer")
    layers.add_column("new params", justify="right")
    for i, m in enumerate(plan.mixers):
        label = f"swa (window {plan.window})" if m == "swa" else m
        extra = new_parameters(shapes, m, plan.conv_size)
        layers.add_row(str(i), label if m != "full" else "[bold]full[/]", f"{extra:+,}" if extra else "")
    cache = Table(title=f"Cache per sequence ({8 * shapes.dtype_bytes}-bit keys/values, fp32 linear state)")
    for col in ("context", "original", "hybrid", "hybrid / original"):
        cache.add_column(col, justify="right")
    for ctx in contexts:
        teacher, hybrid = cache_bytes(shapes, None, ctx), cache_bytes(shapes, plan, ctx)
        cache.add_row(human_tokens(ctx), human_bytes(teacher), human_bytes(hybrid), f"{hybrid / teacher:.1%}")
    return layers, cache


def register(app: typer.Typer) -> None:
    @app.command()
    def plan(
        model: str = typer.Argument(..., help="Alias (see `hybridize models`), Hub id, local directory or .gguf file."),
        ratio: str = typer.Option(None, "--ratio", "-r", help=RATIO_HELP),
        full_layers: str = typer.Option(None, "--full-layers", help="Comma-separated layers to keep full, e.g. 3,7,11."),
        mixer: str = typer.Option("gdn", "--mixer", "-m", help="Replacement for the other layers: gdn, kda or swa."),
        window: int = typer.Option(None, "--window", help="Window (tokens) of swa layers."),
        plan_file: Path = typer.Option(None, "--plan", help="Start from a plan YAML (per-layer gdn/kda/swa/full)."),
        contexts: str = typer.Option(DEFAULT_CONTEXTS, "--contexts", help="Context lengths for the cache table."),
        output: Path = typer.Option(Path("plan.yaml"), "--output", "-o", help="Where to write the plan YAML."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing plan file."),
    ) -> None:
        """Choose which layers to replace, show the cost and savings, and write the plan YAML.

        Example: hybridize plan smollm2-135m --ratio 3:1 -o smol-3to1.yaml
        """
        from .. import api
        from ..errors import UserError
        shapes = api.base_shapes(model)
        p = _make_plan(shapes, ratio, full_layers, mixer, window, plan_file)
        ctx = [parse_tokens(c) for c in contexts.split(",") if c.strip()]
        for table in plan_tables(shapes, p, ctx):
            _console().print(table)
        added = sum(new_parameters(shapes, m, p.conv_size) for m in p.mixers)
        _console().print(f"{len(p.full_layers)} of {p.num_layers} layers stay full attention "
                         f"({', '.join(map(str, p.full_layers)) or 'none'}); new parameters {added:+,}.")
        if output.exists() and not force:
            raise UserError(f"{output} already exists: pass --force to overwrite it, or choose another -o")
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(p.to_yaml())
        tmp.replace(output)
        _console().print(f"plan written to [bold]{output}[/]; use it with `hybridize convert {model} --plan {output}`")

    @app.command()
    def convert(
        model: str = typer.Argument(..., help="Alias (see `hybridize models`), Hub id, local directory or .gguf file."),
        output: Path = typer.Option(..., "--output", "-o", help="Directory for the hybrid checkpoint."),
        ratio: str = typer.Option(None, "--ratio", "-r", help=RATIO_HELP + " Default 3:1."),
        full_layers: str = typer.Option(None, "--full-layers", help="Comma-separated layers to keep full, e.g. 3,7,11."),
        mixer: str = typer.Option("gdn", "--mixer", "-m", help="Replacement for the other layers: gdn, kda or swa."),
        window: int = typer.Option(None, "--window", help="Window (tokens) of swa layers."),
        plan_file: Path = typer.Option(None, "--plan", help="A plan YAML from `hybridize plan`."),
        dtype: str = typer.Option("auto", "--dtype", help="auto (the checkpoint's), float32, bfloat16 or float16."),
        device: str = typer.Option(None, "--device", help="Load onto this device (e.g. cuda); default CPU."),
        calibration_tokens: int = typer.Option(512, "--calibration-tokens",
                                               help="Tokens of built-in text that set the new layers' output scale (0: none)."),
        force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    ) -> None:
        """Swap attention layers for linear / sliding-window mixers and write a hybrid checkpoint.

        Example: hybridize convert smollm2-135m --ratio 3:1 -o out/smol-3to1
        """
        from .. import api
        from ..export import check_output
        check_output(output, force)
        shapes = api.base_shapes(model)
        p = _make_plan(shapes, ratio, full_layers, mixer, window, plan_file)
        command = shlex.join(["hybridize", *sys.argv[1:]])
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn())
        with Progress(*columns, console=_console(), transient=False) as progress:
            task = progress.add_task(f"loading {model} and converting {len(p.replaced_layers)} layers",
                                     total=p.num_layers)
            report = api.convert(model, p, output, dtype=dtype, force=force, device=device, command=command,
                                 calibration_tokens=calibration_tokens,
                                 progress=lambda i: progress.update(task, completed=i + 1))
        _, cache = plan_tables(report.shapes, p, [parse_tokens(c) for c in DEFAULT_CONTEXTS.split(",")])
        _console().print(cache)
        _console().print(
            f"wrote [bold]{report.output}[/]: {len(p.replaced_layers)} layers replaced, full layers "
            f"{p.full_layers}; {report.seconds:.1f} s, peak memory {human_bytes(report.peak_rss_bytes)}.\n"
            f"next: hybridize eval {report.output}   (or hybridize distill {report.output})")

    @app.command()
    def push(
        checkpoint: Path = typer.Argument(..., help="A checkpoint directory written by convert or distill."),
        repo_id: str = typer.Argument(..., help="Hub repository, e.g. your-name/smollm2-135m-hybrid-3to1."),
        private: bool = typer.Option(False, "--private", help="Create the repository as private."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List what would be uploaded; upload nothing."),
    ) -> None:
        """Upload a checkpoint (weights, code, model card) to the Hugging Face Hub.

        The token comes from HF_TOKEN or `hf auth login` and is never printed.
        Example: hybridize push out/smol-3to1 me/smollm2-135m-hybrid --dry-run
        """
        from ..errors import UserError
        from ..export import push as push_folder
        from ..export import upload_plan
        if not (checkpoint / "config.json").is_file():
            raise UserError(f"{checkpoint} is not a checkpoint directory (no config.json): run `hybridize convert` first")
        if repo_id.count("/") != 1:
            raise UserError(f"repository id {repo_id!r} must look like owner/name")
        files = upload_plan(checkpoint)
        table = Table(title=f"{'would upload' if dry_run else 'uploading'} to {repo_id}")
        table.add_column("file")
        table.add_column("size", justify="right")
        for name, size in files:
            table.add_row(name, human_bytes(size))
        _console().print(table)
        if dry_run:
            _console().print(f"dry run: {len(files)} files, {human_bytes(sum(s for _, s in files))}; nothing uploaded")
            return
        try:
            url = push_folder(checkpoint, repo_id, private=private)
        except Exception as err:  # network/auth failures are the user's to fix, not tracebacks
            raise UserError(f"upload to {repo_id} failed ({type(err).__name__}: {str(err)[:200]}); "
                            "check your network and `hf auth login` / HF_TOKEN") from err
        _console().print(f"uploaded to {url}")

    @app.command()
    def models() -> None:
        """List the model aliases that convert, plan and eval accept.

        Example: hybridize models
        """
        from ..sources import ALIASES
        table = Table(title="aliases")
        table.add_column("alias")
        table.add_column("resolves to")
        for alias, target in ALIASES.items():
            table.add_row(alias, target.replace("pypi:", "PyPI package ") + (" (GGUF, no Hub needed)" if target.startswith("pypi:") else ""))
        _console().print(table)

    @app.command()
    def env() -> None:
        """Print versions and devices, for bug reports.

        Example: hybridize env
        """
        import torch
        rows = [("hybridize", _version("hybridize")), ("python", platform.python_version()),
                ("platform", platform.platform())]
        for pkg in ("torch", "transformers", "triton", "peft", "accelerate", "datasets", "safetensors",
                    "huggingface_hub", "flash-linear-attention"):
            rows.append((pkg, _version(pkg)))
        rows.append(("cuda", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"))
        from ..modeling.gated_delta import _triton_rule
        rows.append(("triton kernels", "available" if _triton_rule() is not None else "not importable"))
        for name, value in rows:
            _console().print(f"{name:>16}  {value}", highlight=False)


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
