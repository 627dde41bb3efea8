"""The `edgecv` command line: parse, call the library, print. TensorFlow is imported only inside
the commands that train or convert."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console

from edgecv import __version__
from edgecv.errors import EdgecvError
from edgecv.progress import console


def json_option(what: str, also: str = ""):
    """--json [PATH], the same on every command: `what` as JSON to standard output (--json alone, or
    --json -) or into the file PATH, which is checked before any work (fileio.check_outputs)."""
    return click.option("--json", "json_path", is_flag=False, flag_value="-", metavar="[PATH]",
                        type=click.Path(path_type=Path),
                        help=f"{what}, as JSON, to standard output (--json alone, or --json -) or into the file "
                             f"PATH{also}")


class EdgecvGroup(click.Group):
    """Turns EdgecvError, and click's usage errors (a bad option value, a missing option, an unknown
    command), into one line on stderr and exit code 2, without a traceback or a usage block."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            _usage_error(e)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgecvError as e:
            click.echo(f"edgecv: error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:
            _usage_error(e)
        except KeyboardInterrupt:
            click.echo("edgecv: interrupted; finished stages and finished epochs are kept: rerun with --resume to continue", err=True)
            sys.exit(130)


def _usage_error(e: click.UsageError):
    """One line: click's message and where the command's help is. (A bare group still shows its help.)"""
    if isinstance(e, click.exceptions.NoArgsIsHelpError):
        raise e
    message = " ".join(e.format_message().split())
    taken = e.ctx.params.get("json_path") if e.ctx is not None else None
    if isinstance(e, click.MissingParameter) and isinstance(e.param, click.Argument) and taken and str(taken) != "-":
        # --json takes an optional file name: written before the argument, it took the argument's place
        message += (f" --json took '{taken}' as the file to write the JSON to; put --json after "
                    f"{e.param.human_readable_name}, or write --json -")
    where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
    click.echo(f"edgecv: error: {message}{where}", err=True)
    sys.exit(e.exit_code)


def _whole_numbers(many: bool = False, local_cores: bool = False):
    """Option callback: a whole number >= 1 (many: comma-separated ones), refused in one line.

    local_cores: at most this machine's cores (or 4, the thread counts the docs suggest, 1,2,4, where it has fewer),
    unless the command runs elsewhere (--remote, an eager option, is read first)."""

    def check(ctx, param, value):
        if value is None:
            return None
        text = str(value)
        try:
            counts = [int(v) for v in text.split(",")] if many else [int(text)]
        except ValueError:
            counts = []
        cores = os.cpu_count() or 1
        top = max(cores, 4) if local_cores and not ctx.params.get("remote") else None
        if not counts or min(counts) < 1 or top is not None and max(counts) > top:
            what = "whole numbers" if many else "a whole number"
            span = f"from 1 to {top} (this machine has {cores} cores)" if top is not None else ">= 1"
            sep = ", comma-separated like 1,2,4" if many else ""
            raise EdgecvError(f"{param.opts[0]} must be {what} {span}{sep}, got '{text}'")
        return counts if many else counts[0]

    return check


@click.group(cls=EdgecvGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgecv")
def main():
    """edgecv: distill, prune and INT8-quantize Keras image classifiers for phones, Pis and Jetsons.

    \b
    Example:
      edgecv compress                      # quickstart: distils the shipped teacher on a Fashion-MNIST sample
      edgecv compress --recipe mobilenetv2-int8 --teacher model.keras --data images/ --out runs/exp1
    """


@main.command()
@click.option("--recipe", "-r", help="shipped recipe name or a YAML path [default: quickstart; "
                                     "with --resume, the one the run in --out was started with]")
@click.option("--teacher", "-t", type=click.Path(), help="trained Keras teacher (.keras, .h5, SavedModel dir) or builtin:NAME (one edgecv ships); omit: the recipe's teacher.path, or train one")
@click.option("--data", "-d", help="image folder (one subfolder per class), .npz, fashion-mnist or fashion-mnist-mini")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="run directory [default: runs/<recipe>-<time>]")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a recipe key, e.g. prune.target_sparsity=0.6")
@click.option("--resume", is_flag=True, help="continue a run in --out, skipping finished stages (changed settings rerun the stages they touch and those after)")
@click.option("--force", is_flag=True, help="delete an earlier run in --out and start over")
@json_option("report.json, when done")
@click.option("--trust-model", is_flag=True, help="let the teacher/student files run their own code (Lambda layers); only for files you trust")
def compress(recipe, teacher, data, out, overrides, resume, force, json_path, trust_model):
    """Distill a teacher into a small student, prune it, quantize it to INT8, export and evaluate.

    \b
    Examples:
      edgecv compress                                  # built-in quickstart (4-5 min on 2 cores: README)
      edgecv compress -r mobilenetv2-int8 -t my_model.keras -d my_images/ -o runs/exp1
      edgecv compress -r quickstart --set prune.target_sparsity=0.6 -o runs/sparse60
      edgecv compress -o runs/exp1 --resume            # continue after a crash or Ctrl-C
      edgecv compress -o runs/exp1 --resume --set prune.epochs=8  # same distilled student, prune and on again
      edgecv compress -r mobilenetv2-int8 -t my_model.keras -d new_photos/ -o runs/exp2 --set student.path=runs/exp1
                      --set distill.epochs=8    # refresh runs/exp1's student on new data
    """
    from edgecv.pipeline.compress import base_recipe, default_out, resolve, run_compress

    _check_json_output(json_path)
    raw, recorded = base_recipe(recipe, out, resume)
    if recorded is not None:
        console.print(f"  recipe: {recorded}, the one this run was started with", highlight=False)
    resolved = resolve(raw, list(overrides), teacher, data)
    out = out or default_out(resolved)
    report = run_compress(resolved, out, resume=resume, force=force, console=console, trust_model=trust_model)
    if report is None:  # a multi_worker worker other than the chief: it trained, the chief reports
        return
    print_summary(report, out)
    _json_done(json_path, report)


def print_summary(report: dict, out: Path) -> None:
    """The report's summary table (the one report.md and report.html show), then the next commands."""
    from edgecv.report.report import REPORT_HTML, REPORT_JSON, REPORT_MD
    from edgecv.report.summary import recipe_devices, ship_table, shipped_artefact, summary_table
    from edgecv.report.terminal import print_table, rich_table

    title = f"edgecv: {report['recipe']['name']}  ({report['data']['test_samples']} held-out images)"
    print_table(console, rich_table(summary_table(report), title))
    int8 = next((a for a in report["artefacts"] if a["format"] == "tflite-int8"), None)
    if int8:
        verdict = "fully int8 ✓" if int8.get("fully_int8") else "NOT fully int8 ✗"
        console.print(f"INT8 TFLite: {out / int8['path']} ({verdict})")
    ships = ship_table(report)
    if ships:
        print_table(console, rich_table(ships, "What to ship, per device"))
    paths = [out / name for name in (REPORT_JSON, REPORT_MD, REPORT_HTML) if (out / name).exists()]
    console.print("Report: " + ", ".join(str(p) for p in paths), highlight=False, markup=False, soft_wrap=True)
    ship = shipped_artefact(report)
    devices = recipe_devices(report) or ["rpi4", "pixel-4"]  # a user profile by its path: `--device` finds it
    console.print("[bold]Next:[/]")
    if ship:
        console.print(f"  edgecv bench {out / ship['path']} --threads 1,2,4", highlight=False, markup=False,
                      soft_wrap=True)
        console.print(f"  edgecv profile {out / ship['path']} " + " ".join(f"--device {d}" for d in devices),
                      highlight=False, markup=False, soft_wrap=True)
    console.print(f"  edgecv gate --baseline {out / REPORT_JSON} --candidate <next run>", highlight=False, markup=False,
                  soft_wrap=True)
    console.print(f"  edgecv report {out}", highlight=False, markup=False, soft_wrap=True)


# Checked where the spec is made (edgecv/data/preprocess.py: NORMALIZATIONS), not here: a Choice would
# import numpy into every command's start.
NORMALIZATION_OPTION = click.option(
    "--normalization",
    help="a bare Keras model's pixel scaling: auto (raw when its input goes through its own Rescaling/Normalization "
         "layer scaling as from pixels, as in Keras' tutorials, else unit), unit [0,1], symmetric [-1,1], raw [0,255], "
         "or caffe / torch (keras.applications' preprocess_input modes) [default: auto]; a run directory records "
         "its own")


def _format_choices() -> list[str]:
    from edgecv.export.formats import FORMATS

    return list(FORMATS)


@main.command("export")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--format", "-f", "fmt", required=True, type=click.Choice(_format_choices()), help="artefact format")
@click.option("--calibration", "-c", help="images for INT8 calibration and the check: folder, .npz, fashion-mnist[-mini]")
@click.option("--calibration-samples", type=str, default="300", show_default=True, callback=_whole_numbers(),
              help="class-balanced calibration images")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="output file [default: beside MODEL]")
@NORMALIZATION_OPTION
@click.option("--check-samples", type=str, default="200", show_default=True, callback=_whole_numbers(),
              help="held-out images the artefact is checked on")
@json_option("the export record")
@click.option("--trust-model", is_flag=True, help="let MODEL run its own code (Lambda layers) when loaded; only for files you trust")
@click.option("--force", is_flag=True, help="overwrite an existing output file")
@click.option("--max-drop", type=float, metavar="PTS",
              help="tflite-int8 of a bare model: points of top-1 the int8 file may lose against the float model on "
                   "held-out images; past that, the fewest ops that bring it back are kept in float")
@click.option("--classes", metavar="NAMES",
              help="a bare model's class names in the order of its outputs, comma-separated, e.g. cat,dog,bird "
                   "[default: the calibration folder's class folders, sorted by name]")
def export_cmd(model, fmt, calibration, calibration_samples, out, normalization, check_samples, json_path, trust_model,
               force, max_drop, classes):
    """Export a Keras model, or a compress run directory's student, to one format, and check it
    against the model it came from. Exit 0: written and checked; 1: written but the check failed (the
    file is kept, marked failed in its metadata sidecar); 2: bad input.

    \b
    Examples:
      edgecv export runs/exp1 --format openvino-fp16
      edgecv export model.keras --format tflite-int8 --calibration images/ -o model-int8.tflite
      edgecv export runs/exp1 --format onnx --json
      edgecv export model.keras --format tflite-int8 --calibration images/ --max-drop 1.0
      edgecv export model.keras --format tflite-int8 --calibration images/ --classes cat,dog,bird
    """
    from edgecv.pipeline.export_command import run_export_command

    _check_json_output(json_path)
    names = [n.strip() for n in classes.split(",")] if classes is not None else None
    record = run_export_command(model, fmt, calibration, calibration_samples, out, normalization, check_samples,
                                console, force=force, trust_model=trust_model, max_drop=max_drop, classes=names)
    _json_done(json_path, record)
    if not record["check"]["passed"]:
        sys.exit(1)  # a script or CI job must not take a file that fails its check for a good one


@main.command("quant-debug")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--calibration", "-c", help="images to quantize with and to compare on: folder, .npz, fashion-mnist[-mini] "
              "[default for a run: its data]")
@click.option("--samples", default=64, show_default=True, help="images the float and int8 ops are compared on")
@click.option("--top", default=10, show_default=True, help="ops listed, worst first (--json lists every op)")
@NORMALIZATION_OPTION
@json_option("every op's figures")
@click.option("--trust-model", is_flag=True, help="let MODEL run its own code (Lambda layers) when loaded; only for files you trust")
def quant_debug_cmd(model, calibration, samples, top, normalization, json_path, trust_model):
    """Which ops lose accuracy in INT8: each op of the int8 TFLite conversion run beside its float
    op on the same inputs (TFLite's QuantizationDebugger), its output error in quantization steps
    (RMSE / scale: about 0.29 is ideal rounding), the range its int8 grid spans, and the worst ops.
    A bare Keras model is quantized post-training, and so is a compress run directory's float student
    (TFLite's debugger cannot instrument a QAT graph, whose ranges come from training).

    \b
    Examples:
      edgecv quant-debug model.keras --calibration images/
      edgecv quant-debug runs/exp1 --top 20
      edgecv quant-debug model.keras -c fashion-mnist --json > layers.json
    """
    from edgecv.errors import DataError
    from edgecv.pipeline.export_command import run_quant_debug
    from edgecv.report.terminal import print_table, text_table

    _check_json_output(json_path)
    if top < 1:
        raise DataError(f"--top must be 1 or more, got {top}")
    with console.status(f"quantization debugging of {model.name}"):
        result = run_quant_debug(model, calibration, samples, normalization, trust_model)
    worst = sorted(result["ops"], key=lambda r: -(r["rmse_steps"] or 0))[:top]
    table = text_table("op", "output tensor", "error (steps)", "int8 range", "max |error|", right=("error (steps)", "max |error|"),
                       prose=("output tensor",),
                       title=f"{Path(result['source']).name} ({result['quantized_by']}): the {len(worst)} ops with the "
                             f"largest int8 error of {len(result['ops'])}, on {result['samples']} images of {result['data']}")
    for r in worst:
        steps = "—" if r["rmse_steps"] is None else f"{r['rmse_steps']:.3f}" + (" ✗" if r["rmse_steps"] > result["suspect_above_steps"] else "")
        table.add_row(r["op"], r["tensor"], steps, f"[{r['range'][0]:.4g}, {r['range'][1]:.4g}]", f"{r['max_abs_error']:.4g}")
    print_table(console, table)
    bad = [r for r in result["ops"] if (r["rmse_steps"] or 0) > result["suspect_above_steps"]]
    console.print(f"error in steps: RMSE / scale of the op's int8 output against its float op fed the same inputs; "
                  f"{result['ideal_rounding_steps']} is ideal rounding. {len(bad)} op(s) above "
                  f"{result['suspect_above_steps']} (✗)" + (f": {_keep_float_advice(Path(result['model']))}" if bad
                                                         else "."), highlight=False)
    _json_done(json_path, result)


def _keep_float_advice(model: Path) -> str:
    """How to keep quant-debug's worst ops in float: a run's own search, or export's for a bare model."""
    from edgecv.pipeline.rundir import is_run_dir

    if is_run_dir(model):
        return (f"edgecv compress -o {model} --resume --set quantize.max_drop=1.0 keeps the fewest of them in "
                "float that bring its int8 file within 1 pt of the float student")
    return "keep them in float with edgecv export --max-drop, or train with QAT (edgecv compress)"


@main.command("eval")
@click.argument("artefact", type=click.Path(path_type=Path))
@click.option("--data", "-d", required=True, help="labelled images: folder (one subfolder per class; of a folder with "
              "train/ and test/ (or validation/) only that is read), .npz (x_test and y_test, or x and y), "
              "fashion-mnist[-mini]")
@click.option("--threads", callback=_whole_numbers(local_cores=True), help="runtime threads [default: min(4, cores)]")
@json_option("the full result (with per-sample predictions)")
def eval_cmd(artefact, data, threads, json_path):
    """Accuracy of an exported artefact (.tflite, OpenVINO .xml, .onnx) with its own runtime, using
    the preprocessing and labels recorded in it. Needs no TensorFlow.

    \b
    Examples:
      edgecv eval runs/exp1/artefacts/student-int8.tflite --data fashion-mnist
      edgecv eval model.onnx --data test_images/ --json eval.json
      edgecv eval student-int8.tflite --data test_images/ --json - | jq .top1   # JSON on stdout, table on stderr
    """
    _check_json_output(json_path)
    from edgecv.measure.evaluate import evaluate_artefact
    from edgecv.progress import track_count

    with track_count(f"eval {artefact.name}") as advance:
        result = evaluate_artefact(artefact, data, num_threads=threads, progress=advance)
    from edgecv.report.terminal import print_table, text_table

    table = text_table("class", "top-1", right=("top-1",),
                       title=f"{artefact.name} on {result['data']['source']} ({result['samples']} images, "
                             f"{result['runtime']}, {result['threads']} threads)")
    for name, acc in result["per_class_top1"].items():
        table.add_row(name, "—" if acc is None else f"{acc:.1%}")
    top5 = f"  (top-5 {result['top5']:.2%})" if len(result["class_names"]) > 5 else ""  # else always 100 %
    table.add_row("[b]all[/b]", f"[b]{result['top1']:.2%}[/b]{top5}")
    print_table(console, table)
    from edgecv.data.sources import EVERY_IMAGE_NOTE

    if EVERY_IMAGE_NOTE in result["data"]["notes"]:
        console.print(f"[yellow]note:[/yellow] scored {EVERY_IMAGE_NOTE}; give a folder with train/ and test/ (or "
                      "validation/) subfolders to score held-out images only", highlight=False)
    if result["outputs"] == "binary_logit":
        from edgecv.runtime import BINARY_LOGIT_NOTE

        console.print(f"note: {BINARY_LOGIT_NOTE}", highlight=False)
    for warning in result["data"]["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    _json_done(json_path, result)


def _json_done(json_path: Path | None, result) -> None:
    """--json PATH: the result written there (or to standard output for "-"), and said so on stderr."""
    from edgecv.fileio import json_text, to_stdout, write_output

    if json_path:
        write_output(json_path, json_text(result), "--json")
        if not to_stdout(json_path):
            console.print(f"Written: {json_path}")


def _check_json_output(json_path: Path | None) -> None:
    """--json PATH checked before any work (a "-" is standard output)."""
    _check_outputs((json_path, "--json"))


OUTPUT_PARAMS = ("json_path", "junit_path", "markdown_path")  # the text outputs, written, never read


def _check_outputs(*outputs: tuple) -> bool:
    """fileio.check_outputs, with the files the running command reads (its arguments and options that
    name an existing file, except its outputs: drift's --history is read and appended to on purpose),
    which no output may replace."""
    from edgecv.fileio import check_outputs, to_stdout

    ctx = click.get_current_context(silent=True)
    written = {option for _, option in outputs}
    inputs = {}
    for param in ctx.command.params if ctx is not None else []:
        if param.name in OUTPUT_PARAMS or written & set(param.opts):
            continue
        value = ctx.params.get(param.name)
        for given in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(given, (str, Path)) and not to_stdout(given) and Path(given).is_file():
                named = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
                inputs.setdefault(Path(given).resolve(), named)
    return check_outputs(*outputs, inputs=inputs)


def _json_instead(json_path: Path | None, result) -> bool:
    """_json_done for a command whose own output is on standard output (a listing): True when the JSON
    took standard output, so that the listing is left out."""
    from edgecv.fileio import to_stdout

    _json_done(json_path, result)
    return to_stdout(json_path)


@main.command("bench")
@click.argument("artefact", type=click.Path(path_type=Path))
@click.option("--threads", callback=_whole_numbers(many=True, local_cores=True), help="thread counts, comma-separated, e.g. 1,2,4 [default: min(4, cores)]")
@click.option("--warmup", default=10, show_default=True, help="untimed runs before timing")
@click.option("--runs", type=int, help="timed runs per thread count [default: >= 100 runs and >= 5 s]")
@click.option("--duration", type=float, help="seconds of timed runs per thread count (instead of --runs)")
@json_option("the result, every run's time included", " (several --remote: a folder, one <device>.json each)")
@click.option("--remote", metavar="ssh://[user@]host[:port] | adb://[SERIAL]", multiple=True, is_eager=True,  # read before --threads
              help="run on a device with edgecv installed, over SSH, or on an Android phone over adb with LiteRT's "
                   "benchmark_model (--benchmark-model); repeat it to bench several devices at once")
@click.option("--benchmark-model", type=click.Path(path_type=Path), metavar="PATH",
              help="for adb://: LiteRT's benchmark_model binary built for the phone (android_arm64); pushed with the "
                   "artefact, run on the profile's big cores")
@click.option("--remote-edgecv", default="edgecv", show_default=True, help="the edgecv command on the remote device")
@click.option("--ssh-identity", type=click.Path(), help="private key for --remote [default: ssh's own]")
@click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE", help="extra ssh -o option for --remote")
@click.option("--device", "device_ids", multiple=True,
              help="profile ID or YAML of the device benched (tags the result with its ID, e.g. rpi4); with several "
                   "--remote, one per --remote in the same order")
@click.option("--second-opinion", is_flag=True,
              help="also time the file on this machine with its runtime's own tool, as many runs per thread count: "
                   ".tflite with litert-benchmark (ai-edge-litert), OpenVINO .xml with benchmark_app; its median "
                   "beside edgecv's p50")
def bench_cmd(artefact, threads, warmup, runs, duration, json_path, remote, benchmark_model, remote_edgecv, ssh_identity,
              ssh_options, device_ids, second_opinion):
    """Measure an artefact's latency with its own runtime: load time, first inference, then p50/p90/p99,
    mean, std and throughput per thread count, every run's time kept in the JSON. Needs no TensorFlow.
    With several --remote, the devices are benched in parallel into one table; a board that cannot be
    reached is reported, the others still measured, and the exit code is 1.

    \b
    Examples:
      edgecv bench runs/exp1/artefacts/student-int8.tflite --threads 1,2,4
      edgecv bench student-int8.tflite --remote ssh://pi@raspberrypi.local --device rpi4 --json rpi4.json
      edgecv bench student-int8.tflite --remote ssh://pi@pi4 --device rpi4 --remote ssh://pi@pi5 --device rpi5 --json fleet/
      edgecv bench student-int8.tflite --remote adb:// --benchmark-model ./benchmark_model --device pixel-4
      edgecv bench student-int8.tflite --threads 1,2 --second-opinion  # and LiteRT's litert-benchmark
    """
    from edgecv.fileio import check_writable_dir, to_stdout

    from edgecv.measure.bench import check_settings

    if runs is not None and duration is not None:
        raise click.UsageError("give --runs or --duration, not both")
    check_settings(warmup, runs, duration)
    fleet = len(remote) > 1
    if device_ids and len(device_ids) != max(1, len(remote)):
        raise EdgecvError(f"give one --device per --remote, in the same order ({len(remote)} --remote, "
                          f"{len(device_ids)} --device)" if fleet else "give --device once")
    if fleet and to_stdout(json_path):
        raise EdgecvError("--json - writes one result to standard output, but several --remote make one per device; "
                          "give --json a folder")
    if fleet and json_path:
        check_writable_dir(json_path, "--json")
    else:
        _check_json_output(json_path)
    profiles = []
    if device_ids:
        from edgecv.devices import load_profile

        profiles = [load_profile(d) for d in device_ids]  # an unknown ID fails before anything runs; a YAML tags as its id
    if second_opinion and remote:
        raise EdgecvError("--second-opinion times the file on this machine; leave out --remote (on a phone, "
                          "--remote adb:// already runs LiteRT's benchmark_model)")
    if second_opinion:
        from edgecv.measure.bench import second_opinion_for

        opinion_tool = second_opinion_for(artefact)[0].tool  # an unknown kind of file or a missing tool: said now
    if benchmark_model is not None and not any(r.startswith("adb://") for r in remote):
        raise EdgecvError("--benchmark-model is for --remote adb://SERIAL (an Android phone); a local or ssh:// bench "
                          "uses edgecv's own runtime")
    if remote:
        from edgecv.measure.remote import bench_fleet, check_ssh_settings

        check_ssh_settings(ssh_identity, tuple(ssh_options))
        settings = {"threads": threads, "warmup": warmup, "runs": runs, "duration": duration}
        targets = list(zip(remote, profiles or [None] * len(remote)))
        with console.status(f"benching {artefact.name} on {', '.join(remote)}"):
            results, failures = bench_fleet(artefact, targets, settings, remote_edgecv, ssh_identity, tuple(ssh_options),
                                            benchmark_model)
        if not fleet:
            if failures:
                raise EdgecvError(failures[0]["error"])
            return _bench_done(results[0], json_path)
        _fleet_done(results, failures, json_path)
        if failures:
            sys.exit(1)
        return
    from edgecv.measure.bench import bench_artefact
    from edgecv.progress import track_stages

    with track_stages("runs") as update:
        result = bench_artefact(artefact, threads, warmup, runs, duration, progress=update)
    if second_opinion:
        from edgecv.measure.bench import second_opinion as runtime_opinion

        with console.status(f"timing {artefact.name} with {opinion_tool}"):
            result["second_opinion"] = runtime_opinion(artefact, result["results"], warmup,
                                                       tuple(result["artefact"]["input"]["shape"]))
    if profiles:
        result["device"] = profiles[0].id
    _bench_done(result, json_path)


def _bench_done(result: dict, json_path: Path | None) -> None:
    print_bench(result)
    _json_done(json_path, result)


def _fleet_done(results: list[dict], failures: list[dict], json_dir: Path | None) -> None:
    """One table for every device benched, the failures under it, and a <device>.json each."""
    from edgecv.fileio import output_errors, write_json_atomic
    from edgecv.report.terminal import print_table, text_table

    columns = ("device", "target", "CPU", "threads", "p50 ms", "p90 ms", "p99 ms", "runs")
    table = text_table(*columns, right=("threads", "p50 ms", "p90 ms", "p99 ms", "runs"), prose=("CPU",),
                       title=f"{results[0]['artefact']['file'] if results else 'bench'}: measured on "
                             f"{len(results)} of {len(results) + len(failures)} devices, batch 1")
    for result in results:
        for r in result["results"]:
            table.add_row(result["device"], result["remote"]["target"], result["machine"].get("cpu_model") or "?",
                          str(r["threads"]), _ms(r["p50_ms"]), _ms(r["p90_ms"]), _ms(r["p99_ms"]), str(r["runs"]))
    print_table(console, table)
    for f in failures:
        console.print(f"[red]✗ {f['device'] or f['target']}: not measured[/red]: {f['error']}", highlight=False)
    if json_dir and not results:
        console.print(f"Nothing written to {json_dir}: no device was measured")
    elif json_dir:
        json_dir.mkdir(parents=True, exist_ok=True)
        for result in results:
            path = json_dir / f"{result['device']}.json"
            with output_errors(path, "--json"):
                write_json_atomic(path, result)
        console.print(f"Written: {', '.join(str(json_dir / (r['device'] + '.json')) for r in results)}")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"  # None: the bench tool gave no such figure (adb's benchmark_model)


def print_bench(result: dict) -> None:
    from edgecv.report.terminal import print_table, text_table

    machine = result["machine"]
    columns = ("threads", "load ms", "first ms", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms", "inferences/s", "runs")
    table = text_table(*columns, right=columns,
                       title=f"{result['artefact']['file']}: measured on {result['device']} ({machine.get('cpu_model') or machine.get('arch')}), "
                             f"{result['artefact']['runtime_version']}, batch 1")
    for r in result["results"]:
        table.add_row(str(r["threads"]), f"{r['load_ms']:.1f}", f"{r['first_inference_ms']:.2f}", _ms(r["p50_ms"]),
                      _ms(r["p90_ms"]), _ms(r["p99_ms"]), f"{r['mean_ms']:.3f} ± {r['std_ms']:.3f}",
                      f"{r['throughput_ips']:.1f}", f"{r['runs']} (+{r['warmup_runs']} warm-up)")
    print_table(console, table)
    from edgecv.measure.bench import delegation_summary

    if delegation_summary(result["artefact"].get("delegation")):
        console.print(delegation_summary(result["artefact"]["delegation"]), highlight=False)
    opinion = result.get("second_opinion")
    if opinion:
        for r in opinion["results"]:
            console.print(f"second opinion, {opinion['tool']} ({opinion['api']}), {r['threads']} thread"
                          f"{'s' if r['threads'] > 1 else ''}: median {r['median_ms']:g} ms, mean {r['mean_ms']:g} ms "
                          f"over {r['runs']} runs (reported to {opinion['resolution_ms']:g} ms); edgecv's p50 "
                          f"{r['edgecv_p50_ms']:.3f} ms" + (f" is {r['edgecv_over_theirs']:g}x it"
                                                            if r["edgecv_over_theirs"] else ""), highlight=False)
    if result.get("percentiles"):  # adb's benchmark_model: no per-run times
        console.print(f"percentiles: {result['percentiles']}", highlight=False)
    for r in result["results"]:
        if r.get("stopped_at_max_runs"):
            console.print(f"{r['threads']} threads: stopped at {r['stopped_at_max_runs']:,} runs, before --duration "
                          "ended (every run's time is kept, so the runs are capped)", highlight=False)
        if r.get("xnnpack"):
            console.print(f"{r['threads']} threads: XNNPACK took {'the whole graph' if r['xnnpack']['graph'] == 'all' else 'part of the graph'}"
                          + (f" ({r['xnnpack']['delegate_kernels']} delegate kernels)" if r['xnnpack']['delegate_kernels'] else ""),
                          highlight=False)
    for when in ("throttled_before", "throttled_after"):
        if result.get(when) and result[when].get("flags"):
            console.print(f"[yellow]warning:[/yellow] {when.replace('_', ' ')}: {', '.join(result[when]['flags'])}")


@main.command("profile")
@click.argument("artefact", type=click.Path(path_type=Path))
@click.option("--device", "-D", "device_ids", multiple=True, required=True, help="device profile ID or YAML (repeatable); see edgecv devices list")
@click.option("--measured", "bench_files", multiple=True, type=click.Path(path_type=Path), help="edgecv bench --json result of this file (repeatable)")
@click.option("--threads", callback=_whole_numbers(), help="estimate at this many threads [default: each profile's "
              "calibrated count]; other counts are scaled by Amdahl's law, fitted to published rows (stated in the output)")
@json_option("the result")
def profile_cmd(artefact, device_ids, bench_files, threads, json_path):
    """Latency per device for a .tflite graph: estimated from its work (MACs, bytes, ops) with each
    profile's calibration, and measured where a bench result of this file on that device is given
    (measured wins; both are shown). Lists the five most expensive ops. Needs no TensorFlow.

    \b
    Examples:
      edgecv profile student-int8.tflite --device rpi4 --device pixel-4 --device host
      edgecv profile student-int8.tflite -D rpi4 --measured rpi4-bench.json --json
      edgecv profile student-int8.tflite -D ./my-board.yaml --threads 1
    """
    from edgecv.measure.profile import profile_artefact
    from edgecv.report.terminal import print_table, text_table

    _check_json_output(json_path)
    with console.status(f"profiling {artefact.name}"):
        result = profile_artefact(artefact, list(device_ids), list(bench_files), threads)
    from edgecv.measure.bench import delegation_summary

    graph = result["graph"]
    console.print(f"[b]{artefact.name}[/b]: {graph['ops']} ops, {graph['macs'] / 1e6:.1f} M MACs, {graph['precision']}")
    if result.get("delegation"):
        console.print(f"on this machine's {result['delegation']['runtime']}: {delegation_summary(result['delegation'])}",
                      highlight=False)
    for d in result["devices"]:
        est, meas = d["estimated"], d["measured"]
        line = f"\n[b]{d['device']}[/b] ({d['name']}): estimated {est['ms']:.3g} ms ({est['runtime']}, {est['threads']} threads, {est['precision']}; {est['calibration']})"
        if est.get("caveat"):
            line += f"\n  [yellow]caveat:[/yellow] {est['caveat']}"
        if meas:
            line += f"\n  measured {meas['figure']} {meas['ms']:.3g} ms ({meas['runs']} runs, {meas['threads']} threads, {meas['runtime']}) ← used"
        console.print(line)
        # tensor names run long (fused-op chains): folded at a narrow terminal, never cut
        table = text_table("op", "tensor", "estimated ms", "share", "MMACs", right=("estimated ms", "share", "MMACs"),
                           prose=("tensor",), title=f"most expensive ops on {d['device']} (estimated)")
        for op in est["top_ops"]:
            table.add_row(f"#{op['index']} {op['op']}", op["name"], f"{op['ms']:.3g}", f"{op['share']:.0%}", f"{op['macs'] / 1e6:.1f}")
        print_table(console, table)
    _json_done(json_path, result)


def _ci_outputs(case: str, record: str):
    """gate's and drift's CI outputs, --junit, --markdown and --json: a file each, or - for standard output."""
    options = (
        click.option("--junit", "junit_path", type=click.Path(path_type=Path),
                     help=f"write JUnit XML here (one test case per {case}); - for standard output"),
        click.option("--markdown", "markdown_path", type=click.Path(path_type=Path),
                     help="write Markdown here (e.g. $GITHUB_STEP_SUMMARY); - for standard output"),
        json_option(record))

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def _write_ci_outputs(*outputs) -> None:
    """(path, option, render) each, from _ci_outputs' options: rendered and written only where asked for."""
    from edgecv.fileio import write_output

    for path, option, render in outputs:
        if path:
            write_output(path, render(), option)


@main.command("gate")
@click.option("--baseline", "-b", required=True, type=click.Path(path_type=Path), help="baseline report.json (or its run directory)")
@click.option("--candidate", "-c", required=True, type=click.Path(path_type=Path), help="candidate report.json (or its run directory)")
@click.option("--check", "checks", multiple=True, metavar="CHECK",
              help="a check, repeatable, e.g. 'top1 max-drop 0.5' [default: the candidate recipe's gates.checks]")
@click.option("--artefact", help="artefact gated, by name or format [default: gates.artefact, else tflite-int8]")
@click.option("--alpha", type=float, help="significance level of the paired accuracy test [default: gates.alpha, 0.05]")
@click.option("--rebench", is_flag=True, help="measure both artefacts here, interleaved, for latency.host checks")
@click.option("--data", metavar="DATA",
              help="labelled images (folder, .npz, fashion-mnist[-mini]) to evaluate both artefacts on here: the "
                   "accuracy checks use them, also when the reports were evaluated on different held-out sets")
@click.option("--threads", callback=_whole_numbers(local_cores=True),
              help="runtime threads for --rebench and --data [default: min(4, cores)]")
@click.option("--baseline-artefact", type=click.Path(path_type=Path),
              help="--rebench or --data: the baseline's file, when not beside its report")
@click.option("--candidate-artefact", type=click.Path(path_type=Path),
              help="--rebench or --data: the candidate's file, when not beside its report")
@_ci_outputs(case="check", record="the verdict")
@click.option("--update-baseline", is_flag=True, help="after gating, write the candidate over --baseline (atomically) and exit 0")
def gate_cmd(baseline, candidate, checks, artefact, alpha, rebench, data, threads, baseline_artefact,
             candidate_artefact, junit_path, markdown_path, json_path, update_baseline):
    """Fail a CI job when accuracy, latency or size regresses past tolerances, and not on noise.

    An accuracy drop past its tolerance fails only when an exact McNemar test on the two reports'
    per-image predictions says it is real (p < alpha). Latency compares like with like: the
    reports' estimates per device, or with --rebench both files measured here, interleaved. With
    --data both files are evaluated here on the same labelled images (a model refreshed on new data
    against the one shipped, say).
    Exit 0: pass; 1: regression; 2: bad input (missing file, different evaluation data, unknown check,
    an output path that cannot be written: checked before anything runs).

    \b
    Examples:
      edgecv gate -b baseline.json -c runs/exp2 --check "top1 max-drop 0.5" --check "latency.rpi4 max-increase 10%"
      edgecv gate -b runs/exp1 -c runs/exp2 --rebench --check "latency.host max-increase 10%" --junit gate.xml
      edgecv gate -b runs/shipped -c runs/refreshed --data field_test/ --check "top1 max-drop 0"   # on today's images
      edgecv gate -b ci/baseline.json -c runs/exp2 --markdown "$GITHUB_STEP_SUMMARY"   # checks from the recipe
      edgecv gate -b ci/baseline.json -c runs/exp2 --update-baseline
      edgecv gate -b ci/baseline.json -c runs/exp2 --json - | jq .passed
    """
    from edgecv.fileio import check_writable_file, json_text, output_errors, write_bytes_atomic
    from edgecv.gate import (checks_from_recipe, first_baseline, load_report, render_json, render_junit,
                             render_markdown, render_table, run_gate)
    from edgecv.gate.render import details, verdict
    from edgecv.report.loader import REPORT_JSON

    from edgecv.report.terminal import print_table, wide

    # every output is checked before the verdict: a path that cannot be written is exit 2, never a
    # PASS followed by exit 1 (which CI would read as a regression)
    piped = _check_outputs((junit_path, "--junit"), (markdown_path, "--markdown"), (json_path, "--json"))
    if update_baseline and baseline.is_dir():
        raise EdgecvError(f"--update-baseline writes a file, but '{baseline}' is a directory; pass its report.json path")
    if update_baseline:
        check_writable_file(baseline, "--baseline")
    out = wide(Console(stderr=piped))  # the verdict is the output: stdout (unless a file goes there), wide for a CI log
    cand = load_report(candidate)
    candidate_file = candidate / REPORT_JSON if candidate.is_dir() else candidate
    gates = cand["recipe"].get("gates", {}) if isinstance(cand.get("recipe"), dict) else {}
    artefact = artefact or gates.get("artefact")
    checks = list(checks) or checks_from_recipe(cand.get("recipe"))
    alpha = alpha if alpha is not None else gates.get("alpha", 0.05)
    measured = None
    given = [f"--{side}-artefact" for side, path in (("baseline", baseline_artefact), ("candidate", candidate_artefact))
             if path is not None]
    if given and not (rebench or data):  # it names the file --rebench or --data reads, and nothing else reads it
        raise EdgecvError(f"{' and '.join(given)} only tell{'s' if len(given) == 1 else ''} --rebench or --data "
                          "where a file is; add one of them or leave it out")
    if data:
        from edgecv.data.sources import check_source

        check_source(data)
    first = update_baseline and not baseline.exists()  # a CI job's first run: its outputs are written all the same
    evaluated = None
    if first:
        result = first_baseline(cand, checks, baseline, artefact=artefact, alpha=alpha)
    else:
        base = load_report(baseline)
        files = _gated_files(base, cand, baseline, candidate, artefact, (baseline_artefact, candidate_artefact),
                             "--rebench" if rebench else "--data") if rebench or data else None
        if rebench:
            measured = _rebench(files, threads)
        if data:
            evaluated = _evaluate_both(files, data, threads)
        result = run_gate(base, cand, checks, artefact=artefact, alpha=alpha, rebench=measured, evaluated=evaluated)
    if result.checks:  # none: a first baseline, said in its note
        print_table(out, render_table(result))
    for line in details(result):
        out.print(line, markup=False, highlight=False)
    for note in result.notes:
        out.print(f"note: {note}")
    out.print(verdict(result))
    _write_ci_outputs((junit_path, "--junit", lambda: render_junit(result)),
                      (markdown_path, "--markdown", lambda: render_markdown(result)),
                      (json_path, "--json", lambda: json_text({**render_json(result), "rebench": measured,
                                                               "evaluated": _evaluated_summary(evaluated)})))
    if update_baseline:
        with output_errors(baseline, "--baseline"):
            write_bytes_atomic(baseline, candidate_file.read_bytes())
        out.print(f"No baseline yet: wrote {candidate_file} to {baseline}" if first else
                  f"Baseline updated: {baseline} is now {candidate_file} (the verdict above was not enforced)")
        return
    sys.exit(0 if result.passed else 1)


def _gated_files(base: dict, cand: dict, baseline: Path, candidate: Path, artefact, overrides: tuple,
                 option: str) -> dict:
    """{"baseline": file, "candidate": file}: the two gated artefacts' files, beside their reports or
    where `overrides` (--baseline-artefact, --candidate-artefact) say, checked to be the files the
    reports evaluated; `option` is what needs them, for the error."""
    from edgecv.gate import gated_artefacts

    entries = gated_artefacts(base, cand, artefact)
    files = {}
    for (side, report_path), override in zip((("baseline", baseline), ("candidate", candidate)), overrides):
        root = report_path if report_path.is_dir() else report_path.parent
        files[side] = override or root / entries[side]["path"]
        if not files[side].exists():
            raise EdgecvError(f"{option} needs the {side}'s {entries[side]['name']}, not found at {files[side]}; "
                              f"pass --{side}-artefact FILE")
        size = entries[side].get("size_bytes")
        if files[side].is_file() and isinstance(size, int) and files[side].stat().st_size != size:
            raise EdgecvError(f"{files[side]} is {files[side].stat().st_size:,} bytes, but the {side} report's "
                              f"{entries[side]['name']} is {size:,}: not the file it evaluated; pass that file")
    return files


def _rebench(files: dict, threads) -> dict:
    """Measure the two gated artefact files interleaved on this machine."""
    from edgecv.measure.bench import bench_interleaved
    from edgecv.progress import track_stages

    with track_stages("pairs") as update:
        return bench_interleaved(files["baseline"], files["candidate"], threads=threads,
                                 progress=lambda n: update("rebench, interleaved A/B", n))


def _evaluate_both(files: dict, data: str, threads) -> dict:
    """Both gated artefact files evaluated on the same labelled images here, as `edgecv eval` does."""
    from edgecv.measure.evaluate import evaluate_artefact
    from edgecv.progress import track_count

    evaluated = {}
    for side, path in files.items():
        with track_count(f"eval {side} {Path(path).name}") as advance:
            evaluated[side] = evaluate_artefact(path, data, num_threads=threads, progress=advance)
    return evaluated


def _evaluated_summary(evaluated: dict | None) -> dict | None:
    """gate --json's record of --data: where each side's accuracy came from (the checks carry the figures)."""
    if not evaluated:
        return None
    return {side: {"artefact": e["artefact"], "runtime": e["runtime"], "data": e["data"]["source"],
                   "samples": e["samples"], "test_set_hash": e["data"]["test_set_hash"], "top1": e["top1"],
                   "top5": e["top5"]} for side, e in evaluated.items()}


@main.command("drift")
@click.argument("run_or_reference", type=click.Path(path_type=Path), metavar="RUN_OR_REFERENCE")
@click.option("--data", "-d", "field", required=True,
              help="field images: a folder (images directly inside, or one subfolder per class) or an .npz (x or x_test, optional y)")
@click.option("--artefact", type=click.Path(path_type=Path),
              help="the model file [default: the one the reference records, in the run or next to the reference]")
@click.option("--psi-warn", default=0.1, show_default=True, help="population stability index that warns")
@click.option("--psi-alert", default=0.25, show_default=True, help="population stability index that alerts")
@click.option("--alpha", default=0.01, show_default=True, help="significance level of the tests, after the Holm correction")
@click.option("--threads", callback=_whole_numbers(local_cores=True), help="runtime threads [default: min(4, cores)]")
@_ci_outputs(case="finding", record="the findings")
@click.option("--history", "history_path", type=click.Path(path_type=Path),
              help="append this check to a JSON Lines history here and show the last checks against the same reference")
@click.option("--alert-after", type=int, metavar="N",
              help="with --history: a finding that warned in N checks in a row (this one included) is an alert")
def drift_cmd(run_or_reference, field, artefact, psi_warn, psi_alert, alpha, threads, json_path, markdown_path, junit_path,
              history_path, alert_after):
    """Tell when field images no longer look like the data the model was tested on.

    Compares field images with the drift reference `edgecv compress` stores (statistics of up to
    2,000 held-out images and the shipped artefact's answers on them): brightness, contrast,
    sharpness, saturation and the model's confidence and predicted classes, each by population
    stability index and a two-sample test, and the layout of its thumbnails on the reference's
    principal axes (mirrored or rotated scenes); and names preprocessing mistakes (inputs scaled to
    [0, 1], BGR for RGB, inverted pixels, another image size). With labelled field data, also the
    accuracy. With --history, each check is appended to a file and set against the earlier ones,
    so a shift that warns check after check shows (and with --alert-after, alerts). Exit 0: no
    drift; 1: drift (an alert); 2: bad input. Needs no TensorFlow.

    \b
    Examples:
      edgecv drift runs/exp1 --data field_capture.npz
      edgecv drift drift_reference.npz --artefact student-int8.tflite --data /var/captures/ --junit drift.xml
      edgecv drift runs/exp1 --data labelled_field/ --markdown "$GITHUB_STEP_SUMMARY" --psi-alert 0.3
      edgecv drift runs/exp1 --data /var/captures/today/ --history drift_history.jsonl --alert-after 3  # nightly
    """
    from edgecv.fileio import json_text, output_errors, to_stdout
    from edgecv.measure.drift import Thresholds
    from edgecv.measure.drift_history import append_history, apply_history, read_history

    # every output is checked first: a path that cannot be written is exit 2, never a verdict and exit 1
    if to_stdout(history_path):
        raise EdgecvError("--history - : the history is a file each check reads and appends to; give a file path")
    piped = _check_outputs((junit_path, "--junit"), (markdown_path, "--markdown"), (json_path, "--json"),
                          (history_path, "--history"))
    if alert_after is not None and (history_path is None or alert_after < 2):
        raise EdgecvError("--alert-after N counts warnings over the checks in --history: give --history FILE and "
                          "N of 2 or more" if history_path is None else f"--alert-after must be 2 or more, got {alert_after}")
    earlier = read_history(history_path) if history_path else []  # a damaged history stops us before the work
    thresholds = Thresholds(psi_warn, psi_alert, alpha).check()
    from edgecv.data.field import load_field
    from edgecv.errors import DriftError
    from edgecv.gate.render import (drift_details, render_drift_history, render_drift_junit, render_drift_markdown,
                                    render_drift_table)
    from edgecv.measure.bench import file_sha256
    from edgecv.measure.drift import compare, load_reference, observe_field
    from edgecv.progress import track_count
    from edgecv.report.terminal import print_table, wide
    from edgecv.runtime import open_classifier

    reference_path, recorded = _drift_reference(run_or_reference)
    reference = load_reference(reference_path)
    artefact = artefact or recorded or reference_path.parent / reference.header["artefact"]
    if not artefact.is_file():
        raise DriftError(f"the artefact {artefact} the reference was built from is not there; pass it with --artefact PATH")
    if file_sha256(artefact) != reference.header["artefact_sha256"]:
        raise DriftError(f"{artefact} is not the artefact the reference was built from ({reference.header['artefact']}, "
                         f"sha256 {reference.header['artefact_sha256'][:12]}...); pass that file with --artefact")
    field_set = load_field(field)
    runner, _ = open_classifier(artefact, threads)
    with track_count(f"drift {Path(field).name}") as advance:
        observed = observe_field(runner, reference.spec, field_set, reference.header.get("class_names", []),
                                 progress=advance)
    result = compare(reference, observed, field_set, thresholds).to_dict()
    if history_path:
        result["history"] = apply_history(result, earlier, alert_after)
    out = wide(Console(stderr=piped))  # the verdict is the output: stdout (unless a file goes there), wide for a CI log
    print_table(out, render_drift_table(result))
    for line in drift_details(result):
        out.print(line, markup=False, highlight=False)
    if history_path:
        print_table(out, render_drift_history(result))
    _write_ci_outputs((junit_path, "--junit", lambda: render_drift_junit(result)),
                      (markdown_path, "--markdown", lambda: render_drift_markdown(result)),
                      (json_path, "--json", lambda: json_text(result)))
    if history_path:
        with output_errors(history_path, "--history"):
            append_history(history_path, result["history"]["recent"][-1])
    sys.exit(1 if result["drift"] else 0)


@main.command("drift-reference")
@click.argument("artefact", type=click.Path(path_type=Path))
@click.option("--data", "-d", "held_out", required=True,
              help="held-out images the model was tested on: a folder (one subfolder per class, or images directly "
                   "inside; of a folder with train/ and test/ (or validation/), that split) or an .npz (x or x_test, "
                   "optional y)")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="the reference file [default: drift_reference.npz "
              "beside the artefact]")
@click.option("--max-images", default=2000, show_default=True, help="class-balanced images it describes")
@click.option("--seed", default=0, show_default=True, help="which images are drawn")
@click.option("--threads", callback=_whole_numbers(local_cores=True), help="runtime threads [default: min(4, cores)]")
@json_option("what the reference holds (its header) and where it is")
def drift_reference_cmd(artefact, held_out, out, max_images, seed, threads, json_path):
    """Build the drift reference of a model shipped without one (before edgecv stored it, or an
    artefact exported with `edgecv export`), from held-out images, as compress's evaluate stage
    does. Needs no TensorFlow: it can run on the device.

    
    Examples:
      edgecv drift-reference student-int8.tflite --data heldout/        # writes drift_reference.npz beside it
      edgecv drift-reference model.xml --data test.npz --out ref.npz && edgecv drift ref.npz --artefact model.xml --data field/
    """
    import dataclasses

    from edgecv.data.field import load_field
    from edgecv.data.sources import held_out_dir, labels_by_name
    from edgecv.errors import DriftError
    from edgecv.fileio import check_writable_file, output_errors
    from edgecv.measure.drift import REFERENCE_FILE, build_reference, check_reference_out, save_reference
    from edgecv.progress import track_count
    from edgecv.runtime import open_classifier

    if not artefact.is_file():
        raise DriftError(f"artefact '{artefact}' not found; pass the model file the device runs")
    if max_images < 50:
        raise DriftError(f"--max-images {max_images} is too few for the tests to tell a shift from noise; give 200 or more")
    if seed < 0:
        raise DriftError(f"--seed {seed}: give a whole number of 0 or more")
    out = out or artefact.parent / REFERENCE_FILE
    check_reference_out(out, {"artefact": artefact, "held-out data": Path(held_out)})
    check_writable_file(out, "--out")
    _check_json_output(json_path)
    runner, meta = open_classifier(artefact, threads)
    folder = Path(held_out)
    # a training folder (train/ and test/ or validation/), as compress and eval take it: its held-out split
    split_dir = held_out_dir(folder) if folder.is_dir() and (folder / "train").is_dir() else None
    if split_dir is not None:
        console.print(f"  held-out images: {split_dir} (the folder's {split_dir.name}/ split, as edgecv eval reads it)",
                      highlight=False)
    held = load_field(str(split_dir or folder))
    split = held.images
    if held.labelled:  # labels as the artefact's classes, so field accuracy can be set against them
        split = dataclasses.replace(split, labels=labels_by_name(held.class_names, split.labels,
                                                                 meta.get("class_names") or [], held.source))
    with track_count(f"reference {Path(held_out).name}") as advance:
        reference = build_reference(artefact, split, runner, source=str(split_dir or folder), max_images=max_images,
                                    seed=seed, progress=advance)
    with output_errors(out, "--out"):
        save_reference(out, reference)
    labelled = "labelled" if held.labelled else "unlabelled: no accuracy comparison later"
    console.print(f"[green]✓[/green] drift reference of {artefact.name}: {reference.header['images']} images "
                  f"({labelled}), {out.stat().st_size / 1024:.0f} KB: {out}")
    console.print(f"next: edgecv drift {out} --artefact {artefact} --data FIELD")
    _json_done(json_path, {"reference": str(out), "artefact": str(artefact), "size_bytes": out.stat().st_size,
                           "labelled": held.labelled, "header": reference.header})


def _drift_reference(run_or_reference: Path) -> tuple[Path, Path | None]:
    """(the reference file, the artefact the run recorded for it or None) of a run directory or a reference path."""
    from edgecv.errors import DriftError
    from edgecv.report.loader import read_report

    if not run_or_reference.is_dir():
        return run_or_reference, None
    report = read_report(run_or_reference, DriftError)
    entry = ((report.get("stages") or {}).get("evaluate") or {}).get("result", {}).get("drift_reference")
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("path", "artefact")):
        raise DriftError(f"{run_or_reference} records no drift reference (runs before edgecv wrote one, or with no "
                         "exported artefact); rerun `edgecv compress`, or pass a drift_reference.npz")
    return run_or_reference / entry["path"], run_or_reference / entry["artefact"]


@main.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR [RUN_DIR ...]")
@click.option("--out", "-o", type=click.Path(path_type=Path),
              help="output folder [default: the run directory for one run, ./edgecv-comparison for several]")
@json_option("the files written")
def report_cmd(runs, out, json_path):
    """Render report.md and a self-contained report.html (figures embedded) from report.json.

    One run: its report is rendered again, into the run directory. Several runs: a comparison
    (shipped artefact, accuracy, size and latency per run; accuracy vs latency across runs).
    A run is a run directory or a report.json. Needs matplotlib: pip install "edgecv[report]".

    \b
    Examples:
      edgecv report runs/exp1                          # writes runs/exp1/report.{md,html}
      edgecv report runs/exp1 runs/exp2 runs/exp3      # writes edgecv-comparison/report.{md,html}
      edgecv report runs/exp1 runs/exp2 --out cmp/
    """
    from edgecv.errors import ReportError
    from edgecv.fileio import check_writable_dir, output_errors
    from edgecv.report.report import load_report, render_comparison, render_report, run_label

    _check_json_output(json_path)
    loaded = [load_report(r) for r in runs]
    out = check_writable_dir(out or (loaded[0][1] if len(loaded) == 1 else Path("edgecv-comparison")), "--out")
    if len(loaded) == 1:
        with output_errors(out, "--out"):
            written = render_report(out, loaded[0][0])
    else:
        run_dirs = {d.resolve() for _, d in loaded}
        if out.resolve() in run_dirs:
            raise ReportError(f"--out {out} is one of the runs compared: its own report.md/html would be overwritten; "
                              f"choose another folder")
        labels: list[str] = []
        for r in runs:
            label = run_label(r)
            labels.append(label if label not in labels else f"{label} ({len(labels) + 1})")
        with output_errors(out, "--out"):
            written = render_comparison([(label, rep) for label, (rep, _) in zip(labels, loaded)],
                                        [str(r) for r in runs], out)
    for path in written:
        console.print(f"wrote {path}", highlight=False, markup=False, soft_wrap=True)
    _json_done(json_path, {"runs": [str(r) for r in runs], "written": [str(p) for p in written]})


@main.group()
def devices():
    """Device profiles: hardware, runtimes, threads, best artefact, latency calibration.

    \b
    Examples:
      edgecv devices list
      edgecv devices show rpi4
      edgecv devices new ./orange-pi-5.yaml --like rpi5
    """


@devices.command("list")
@json_option("the listing")
def devices_list(json_path):
    """The device profiles edgecv knows: the shipped ones (devices/*.yaml) and the YAMLs in the
    folders EDGECV_DEVICES names (separated by ':'), which replace a shipped profile of the same id.

    \b
    Examples:
      edgecv devices list
      EDGECV_DEVICES=~/boards edgecv devices list | grep pixel
      edgecv devices new ~/boards/orange-pi-5.yaml --like rpi5   # a board not listed
    """
    from edgecv.devices import list_profiles, profile_origin

    _check_json_output(json_path)
    profiles = list_profiles()
    if _json_instead(json_path, [{"id": p.id, "name": p.name, "kind": p.kind, "soc": p.soc,
                                  "best_artefact": p.best_artefacts[0]["format"], "from": profile_origin(p)}
                                 for p in profiles]):
        return
    from edgecv.report.terminal import print_table, text_table

    table = text_table("id", "device", "CPU", "ships", "latency calibration", "from", prose=("device", "CPU"))
    for p in profiles:
        cpu = " + ".join(f"{c['count']}×{c['core']}" + (f" @{c['ghz']:g} GHz" if c["ghz"] else "") for c in p.cpu["clusters"])
        table.add_row(p.id, p.name, cpu, p.best_artefacts[0]["format"],
                      p.calibration["method"] if p.calibration else "from CPU facts", profile_origin(p))
    print_table(Console(), table)  # stdout: the listing is the output
    # the hint on stderr: `| grep` and `| wc -l` read the table alone
    click.echo("Your board is not listed? edgecv devices new ./my-board.yaml --like CLOSEST_ID", err=True)


@devices.command("references")
@click.option("--all", "every", is_flag=True,
              help="every reference model, fp32 and int8: calibrate then fits the device a cost model of its own, as the "
                   "host gets, instead of one figure per precision (about a minute of benches)")
@json_option("the reference models by precision")
def devices_references(every, json_path):
    """The reference models to bench on a device for `edgecv devices calibrate`.

    \b
    Example:
      edgecv bench "$(edgecv devices references | head -1)" --remote ssh://me@opi5 --device opi5.yaml --json fp32.json
    """
    from edgecv.measure.host_calibration import all_reference_models, reference_models

    _check_json_output(json_path)
    if every:
        models = {f"{p}/{name}": str(path) for (p, name), path in all_reference_models().items()}
    else:
        models = {p: str(path) for p, path in reference_models().items()}
    if not _json_instead(json_path, models):
        click.echo("\n".join(models.values()))


@devices.command("calibrate")
@click.argument("profile_path")
@click.option("--measured", "bench_files", multiple=True, required=True, type=click.Path(path_type=Path),
              help="an edgecv bench --json result of a reference model on this device, or a folder of them "
                   "(repeatable: fp32 and int8)")
@json_option("the fitted calibration")
def devices_calibrate(profile_path, bench_files, json_path):
    """Give your own profile latency figures measured on its device: fits ms per cost unit from
    `edgecv bench` results of the reference models (`edgecv devices references`) and writes them into
    the profile's calibration block; `edgecv profile` uses them from then on.

    \b
    Example (three commands, from a machine that reaches the board over SSH):
      for p in $(edgecv devices references); do
        edgecv bench $p --remote ssh://me@opi5 --device ./orange-pi-5.yaml --json $(basename $p .tflite).json; done
      edgecv devices calibrate ./orange-pi-5.yaml --measured reference-fp32.json --measured reference-int8.json
      edgecv profile student-int8.tflite --device ./orange-pi-5.yaml
    With `edgecv devices references --all` (every reference model benched into one folder, then
    `--measured FOLDER`) the board gets a cost model of its own, as the host does.
    """
    from edgecv.devices import load_profile, profile_origin
    from edgecv.measure.device_calibration import calibration_block, fit_measured, write_calibration
    from edgecv.measure.estimate import estimate_for_device, load_calibration
    from edgecv.measure.host_calibration import reference_models
    from edgecv.measure.tflite_graph import read_tflite_graph

    _check_json_output(json_path)
    profile = load_profile(profile_path)
    if profile.id == "host" or profile_origin(profile) == "shipped":
        raise EdgecvError(f"'{profile.id}' is a shipped profile, which edgecv never edits; copy "
                          f"{profile.path or 'devices/host.yaml'} to your own file (keep the id or change it with "
                          "the file name) and calibrate the copy")
    calibration = load_calibration()
    files = [f for given in bench_files for f in (sorted(given.glob("*.json")) if given.is_dir() else [given])]
    if not files:
        raise EdgecvError(f"--measured {', '.join(map(str, bench_files))}: no .json bench result there; bench the "
                          "reference models (edgecv devices references) with edgecv bench --json into it")
    fitted = fit_measured(profile, files, calibration)
    block = calibration_block(profile, fitted)
    graphs = {p: read_tflite_graph(path) for p, path in reference_models().items() if p in fitted}
    before = {p: estimate_for_device(g, profile, calibration) for p, g in graphs.items()}
    write_calibration(Path(profile.path), block)
    after_profile = load_profile(profile.path)
    after = {p: estimate_for_device(g, after_profile, calibration) for p, g in graphs.items()}
    rows = [{"precision": p, "before_ms": before[p]["ms"], "before": before[p]["calibration"], "after_ms": after[p]["ms"],
             "after": after[p]["calibration"], "threads": after[p]["threads"]} for p in sorted(fitted)]
    if _json_instead(json_path, {"profile": profile.id, "path": profile.path, "calibration": block, "references": rows}):
        return
    console.print(f"Wrote the calibration of {profile.id} into {profile.path}:")
    for r in rows:
        console.print(f"  reference {r['precision']}: estimated {r['before_ms']:.3g} ms before ({r['before']}) -> "
                      f"{r['after_ms']:.3g} ms now ({r['after']})", highlight=False)


@devices.command("new")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--like", "like", required=True, help="the profile whose hardware facts to start from (an id or a YAML path)")
@json_option("what was written")
def devices_new(path, like, json_path):
    """Start a profile for your own board from the closest known one: its hardware facts are copied
    into PATH (the file name is the new id), its calibration is not, so estimates come from the CPU
    facts you edit until `edgecv devices calibrate` measures the board.

    \b
    Example:
      edgecv devices new ./orange-pi-5.yaml --like rpi5   # then edit the cores and clocks
      edgecv profile student-int8.tflite --device ./orange-pi-5.yaml
    """
    from edgecv.devices import is_profile_path, new_profile_text
    from edgecv.errors import OutputError
    from edgecv.fileio import check_writable_file, output_errors, write_text_atomic

    if not is_profile_path(str(path)):
        raise OutputError(f"{path}: a profile file ends in .yaml; give e.g. ./{path.name}.yaml")
    if path.exists():
        raise OutputError(f"{path} already exists; edit it, or give a new file name (it becomes the profile id)")
    check_writable_file(path, "PATH")
    _check_json_output(json_path)
    text = new_profile_text(like, path)
    with output_errors(path, "PATH"):
        write_text_atomic(path, text)  # validated by new_profile_text, as every other command will read it
    if _json_instead(json_path, {"profile": path.stem, "path": str(path), "like": like}):
        return
    click.echo(f"Wrote {path} (profile '{path.stem}', facts copied from '{like}'). Edit its hardware facts, then:\n"
               f"  edgecv devices show {path}\n  edgecv profile MODEL.tflite --device {path}")


@devices.command("show")
@click.argument("device_id")
@json_option("the profile")
def devices_show(device_id, json_path):
    """One profile in full, with the calibration figures the estimator uses.

    Example: edgecv devices show jetson-orin-nano
    """
    import dataclasses

    import yaml

    from edgecv.devices import load_profile

    _check_json_output(json_path)
    loaded = load_profile(device_id)
    profile = dataclasses.asdict(loaded)
    try:
        from edgecv.measure.estimate import load_calibration

        fitted = load_calibration()["devices"].get(loaded.id)
    except EdgecvError:
        fitted = None
    if profile["calibration"] is None:
        profile["calibration"] = {"method": "from CPU facts", "fitted": None,
                                  "note": "no figures of its own: edgecv profile prices it from the calibrated profile "
                                          "with the same big core, scaled by clock, and says which"}
    else:
        profile["calibration"]["fitted"] = fitted or ("measured at run time on this machine" if loaded.id == "host"
                                                      else None)
    if not _json_instead(json_path, profile):
        click.echo(yaml.safe_dump(profile, sort_keys=False, allow_unicode=True))


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
@json_option("the listing")
def recipes_list(json_path):
    """List the shipped recipes.

    Example: edgecv recipes list
    """
    from edgecv.pipeline.recipe import list_recipes, load_recipe

    _check_json_output(json_path)
    rows = [{"name": p.stem, "description": load_recipe(str(p))["description"], "path": str(p)} for p in list_recipes()]
    if _json_instead(json_path, rows):
        return
    from edgecv.report.terminal import print_table, text_table

    table = text_table("name", "description", prose=("description",))
    for r in rows:
        table.add_row(r["name"], r["description"])
    print_table(Console(), table)


@recipes.command("show")
@click.argument("name")
@click.option("--resolved", is_flag=True, help="show every key, with defaults filled in")
@json_option("the recipe with every key, defaults filled in")
def recipes_show(name, resolved, json_path):
    """Print a recipe (shipped name or path).

    \b
    Examples:
      edgecv recipes show quickstart --resolved
      edgecv recipes show mobilenetv2-int8 --json - | jq .distill.epochs
    """
    import yaml

    from edgecv.pipeline.recipe import load_recipe, resolve_recipe_path

    _check_json_output(json_path)
    recipe = load_recipe(name)  # validates
    if _json_instead(json_path, recipe):
        return
    click.echo(yaml.safe_dump(recipe, sort_keys=False) if resolved else resolve_recipe_path(name).read_text())


@recipes.command("validate")
@click.argument("path")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="check with these overrides applied")
@json_option("the verdict and notes")
def recipes_validate(path, overrides, json_path):
    """Check a recipe as `edgecv compress` does before it trains: every key against the schema, and the rules
    between keys (e.g. an int8 format needs quantize.enabled); exit 2 with the problem named if it is wrong.
    A format whose extra is not installed on this machine is a note, not an error.

    \b
    Examples:
      edgecv recipes validate recipes/mobilenetv2-int8.yaml
      edgecv recipes validate my.yaml --set quantize.mode=ptq --json -
    """
    from edgecv.pipeline.recipe import load_recipe, resolve_recipe_path
    from edgecv.pipeline.stages import check_recipe_consistency, missing_extras

    _check_json_output(json_path)
    recipe = load_recipe(path, list(overrides))
    check_recipe_consistency(recipe, extras=False)
    notes = [f"on this machine, {line}" for line in missing_extras(recipe)]
    if _json_instead(json_path, {"recipe": str(resolve_recipe_path(path)), "valid": True, "notes": notes}):
        return
    click.echo(f"{path}: valid")
    for note in notes:
        click.echo(f"note: {note}", err=True)


@recipes.command("schema")
@json_option("every key with its type, default and meaning")
def recipes_schema(json_path):
    """Print every recipe key with its type, default and meaning.

    \b
    Examples:
      edgecv recipes schema
      edgecv recipes schema --json - | jq '.[] | select(.key | startswith("prune."))'
    """
    from rich.text import Text

    from edgecv.pipeline.recipe import schema_reference
    from edgecv.report.terminal import print_table, text_table

    _check_json_output(json_path)
    columns, rows = ("key", "type", "default", "meaning"), schema_reference()
    if _json_instead(json_path, [dict(zip(columns, row)) for row in rows]):
        return
    table = text_table(*columns, prose=columns[1:])
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # plain text: "[cat, dog]" and "['unit', ...]" are not markup
    print_table(Console(), table)


if __name__ == "__main__":
    main()
