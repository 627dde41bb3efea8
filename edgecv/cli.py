"""The `edgecv` command line: parse, call the library, print. TensorFlow is imported only inside
the commands that train or convert."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from edgecv import __version__
from edgecv.errors import EdgecvError
from edgecv.progress import console


class EdgecvGroup(click.Group):
    """Turns EdgecvError into one line on stderr and exit code 2, without a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgecvError as e:
            click.echo(f"edgecv: error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("edgecv: interrupted; finished stages are kept: rerun with --resume to continue", err=True)
            sys.exit(130)


@click.group(cls=EdgecvGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgecv")
def main():
    """edgecv: distill, prune and INT8-quantize Keras image classifiers for phones, Pis and Jetsons.

    \b
    Example:
      edgecv compress                      # quickstart: trains a teacher on a Fashion-MNIST sample
      edgecv compress --recipe mobilenetv2-int8 --teacher model.keras --data images/ --out runs/exp1
    """


@main.command()
@click.option("--recipe", "-r", default="quickstart", show_default=True, help="shipped recipe name or a YAML path")
@click.option("--teacher", "-t", type=click.Path(), help="trained Keras teacher (.keras, .h5, SavedModel dir); omit to train one")
@click.option("--data", "-d", help="image folder (one subfolder per class), .npz, fashion-mnist or fashion-mnist-mini")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="run directory [default: runs/<recipe>-<time>]")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a recipe key, e.g. prune.target_sparsity=0.6")
@click.option("--resume", is_flag=True, help="continue a run in --out, skipping finished stages")
@click.option("--force", is_flag=True, help="delete an earlier run in --out and start over")
@click.option("--json", "as_json", is_flag=True, help="print report.json to stdout when done")
def compress(recipe, teacher, data, out, overrides, resume, force, as_json):
    """Distill a teacher into a small student, prune it, quantize it to INT8, export and evaluate.

    \b
    Examples:
      edgecv compress                                  # built-in quickstart (~10 min on 2 cores)
      edgecv compress -r mobilenetv2-int8 -t my_model.keras -d my_images/ -o runs/exp1
      edgecv compress -r quickstart --set prune.target_sparsity=0.6 -o runs/sparse60
      edgecv compress -o runs/exp1 --resume            # continue after a crash or Ctrl-C
    """
    from edgecv.pipeline.compress import default_out, resolve, run_compress

    resolved = resolve(recipe, list(overrides), teacher, data)
    out = out or default_out(resolved)
    report = run_compress(resolved, out, resume=resume, force=force, console=console)
    print_summary(report, out)
    if as_json:
        click.echo(json.dumps(report, indent=2))


def print_summary(report: dict, out: Path) -> None:
    from edgecv.report.report import SUMMARY_HEADER, summary_rows

    table = Table(title=f"edgecv: {report['recipe']['name']}  ({report['data']['test_samples']} held-out images)")
    for h in SUMMARY_HEADER:
        table.add_column(h, justify="right" if h != "artefact" and h != "format" else "left")
    for row in summary_rows(report):
        table.add_row(*row)
    console.print(table)
    int8 = next((a for a in report["artefacts"] if a["format"] == "tflite-int8"), None)
    if int8:
        verdict = "fully int8 ✓" if int8.get("fully_int8") else "NOT fully int8 ✗"
        console.print(f"INT8 TFLite: {out / int8['path']} ({verdict})")
    console.print(f"Report: {out / 'report.json'}, {out / 'report.md'}")


def _format_choices() -> list[str]:
    from edgecv.export.formats import FORMATS

    return list(FORMATS)


@main.command("export")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--format", "-f", "fmt", required=True, type=click.Choice(_format_choices()), help="artefact format")
@click.option("--calibration", "-c", help="images for INT8 calibration and the check: folder, .npz, fashion-mnist[-mini]")
@click.option("--calibration-samples", default=300, show_default=True, help="class-balanced calibration images")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="output file [default: beside MODEL]")
@click.option("--normalization", type=click.Choice(["unit", "symmetric", "raw"]), default="unit", show_default=True,
              help="pixel scaling the model expects (a bare Keras model; run directories record theirs)")
@click.option("--check-samples", default=200, show_default=True, help="held-out images the artefact is checked on")
@click.option("--json", "as_json", is_flag=True, help="print the export record as JSON")
def export_cmd(model, fmt, calibration, calibration_samples, out, normalization, check_samples, as_json):
    """Export a Keras model, or a compress run directory's student, to one format, and check it
    against the model it came from.

    \b
    Examples:
      edgecv export runs/exp1 --format openvino-fp16
      edgecv export model.keras --format tflite-int8 --calibration images/ -o model-int8.tflite
      edgecv export runs/exp1 --format onnx --json
    """
    from edgecv.pipeline.export_command import run_export_command

    record = run_export_command(model, fmt, calibration, calibration_samples, out, normalization, check_samples,
                                console)
    if as_json:
        click.echo(json.dumps(record, indent=2))


@main.command("eval")
@click.argument("artefact", type=click.Path(path_type=Path))
@click.option("--data", "-d", required=True, help="labelled images: folder (one subfolder per class), .npz, fashion-mnist[-mini]")
@click.option("--threads", type=int, help="runtime threads [default: min(4, cores)]")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="write the full result (with per-sample predictions) here")
def eval_cmd(artefact, data, threads, json_path):
    """Accuracy of an exported artefact (.tflite, OpenVINO .xml, .onnx) with its own runtime, using
    the preprocessing and labels recorded in it. Needs no TensorFlow.

    \b
    Examples:
      edgecv eval runs/exp1/stages/export/artefacts/student-int8.tflite --data fashion-mnist
      edgecv eval model.onnx --data test_images/ --json eval.json
    """
    from edgecv.fileio import write_json_atomic
    from edgecv.measure.evaluate import evaluate_artefact
    from edgecv.progress import track_count

    with track_count(f"eval {artefact.name}") as advance:
        result = evaluate_artefact(artefact, data, num_threads=threads, progress=advance)
    table = Table(title=f"{artefact.name} on {result['data']['source']} ({result['samples']} images, "
                        f"{result['runtime']}, {result['threads']} threads)")
    table.add_column("class")
    table.add_column("top-1", justify="right")
    for name, acc in result["per_class_top1"].items():
        table.add_row(name, "—" if acc is None else f"{acc:.1%}")
    table.add_row("[b]all[/b]", f"[b]{result['top1']:.2%}[/b]  (top-5 {result['top5']:.2%})")
    console.print(table)
    if json_path:
        write_json_atomic(json_path, result)
        console.print(f"Written: {json_path}")


@main.group()
def recipes():
    """List, show and validate recipes.

    \b
    Examples:
      edgecv recipes list
      edgecv recipes show quickstart
      edgecv recipes validate my-recipe.yaml
    """


@recipes.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def recipes_list(as_json):
    """List the shipped recipes.

    Example: edgecv recipes list
    """
    from edgecv.pipeline.recipe import list_recipes, load_recipe

    rows = [{"name": p.stem, "description": load_recipe(str(p))["description"], "path": str(p)} for p in list_recipes()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "description")
    for r in rows:
        table.add_row(r["name"], r["description"])
    Console().print(table)


@recipes.command("show")
@click.argument("name")
@click.option("--resolved", is_flag=True, help="show every key, with defaults filled in")
def recipes_show(name, resolved):
    """Print a recipe (shipped name or path).

    Example: edgecv recipes show quickstart --resolved
    """
    import yaml

    from edgecv.pipeline.recipe import load_recipe, resolve_recipe_path

    if resolved:
        click.echo(yaml.safe_dump(load_recipe(name), sort_keys=False))
    else:
        load_recipe(name)  # validates
        click.echo(resolve_recipe_path(name).read_text())


@recipes.command("validate")
@click.argument("path")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="check with these overrides applied")
def recipes_validate(path, overrides):
    """Check a recipe against the schema; exit 2 with the bad key named if it is wrong.

    Example: edgecv recipes validate recipes/mobilenetv2-int8.yaml
    """
    from edgecv.pipeline.recipe import load_recipe

    load_recipe(path, list(overrides))
    click.echo(f"{path}: valid")


@recipes.command("schema")
def recipes_schema():
    """Print every recipe key with its type, default and meaning.

    Example: edgecv recipes schema
    """
    from edgecv.pipeline.recipe import schema_reference

    table = Table("key", "type", "default", "meaning")
    for row in schema_reference():
        table.add_row(*row)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
