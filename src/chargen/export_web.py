"""``chargen export RUN --web DIR``: a static site that generates in the browser.

DIR holds ``index.html``, ``app.js``, ``sampler.js``, ``tokenizer.js``, ``style.css`` and
``favicon.svg`` (the template in ``chargen/web_static/``), ``model.onnx`` (the step graph of
``export_onnx``, float32 or int8), ``vocab.json`` (the run's tokenizer), ``config.json`` (the
graph's state inputs, the start token, the default prompt and settings, the surprisal colour
scale) and ``ort/``: onnxruntime-web's wasm backend (its ESM bundle ``ort.wasm.min.mjs`` and
``ort-wasm-simd-threaded.{mjs,wasm}``; no WebGPU/WebGL variants), copied from the npm package.
Any static server serves it (``python -m http.server -d DIR``); the page requests nothing
beyond its own folder.

``sampler.js`` is chargen's sampling written again: the counter-based uniforms of ``rng.py``
(64-bit arithmetic in BigInt) and temperature, top-k, top-p, min-p and the inverse-CDF draw
of ``sampling.py`` with the same float32/float64 steps, so the page's text for a seed is
``chargen generate RUN --seed S --temperature T --prompt P --length N``'s (up to float32
rounding of the logits by another runtime, as ``--engine onnx``).

onnxruntime-web comes from ``--ort-dir`` (an installed ``onnxruntime-web/dist`` folder), else
``./node_modules/onnxruntime-web/dist``, else the global npm root's; none is a one-line
ConfigError naming ``npm install onnxruntime-web``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargen.errors import ConfigError

TEMPLATE = Path(__file__).resolve().parent / "web_static"
PAGE_FILES = ("index.html", "app.js", "sampler.js", "tokenizer.js", "style.css", "favicon.svg")
#: the wasm backend: the ESM bundle and the Emscripten module and binary it imports
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PACKAGE_DIST = Path("node_modules") / "onnxruntime-web" / "dist"
INSTALL = "npm install onnxruntime-web"
FORMAT = "chargen-web-1"
MODEL_FILE = "model.onnx"
MAX_LENGTH = 100_000  # tokens the page generates at most per click
DEFAULT_TEMPERATURE = 0.8
DEFAULT_LENGTH = 400


@dataclass(frozen=True)
class OrtDist:
    """An installed onnxruntime-web ``dist`` folder holding the wasm backend's files."""

    path: Path
    version: str


@dataclass(frozen=True)
class Site:
    """What ``write_site`` wrote: bytes in all, files, the runtime's and the page's bytes."""

    total: int
    files: int
    runtime: int
    page: int


# --------------------------------------------------------------------------- the runtime
def find_ort_dist(ort_dir: str | os.PathLike[str] | None = None) -> OrtDist:
    """The onnxruntime-web ``dist`` folder to copy: ``ort_dir`` (the dist folder, the package
    folder or a node_modules folder), else ``./node_modules/onnxruntime-web/dist``, else the
    one under ``npm root -g``. One-line ConfigError when none holds the wasm files."""
    if ort_dir is not None:
        given = Path(ort_dir)
        for candidate in (given, given / "dist", given / "onnxruntime-web" / "dist"):
            if _complete(candidate):
                return OrtDist(candidate, _version(candidate))
        lacking = ", ".join(name for name in ORT_FILES if not (given / name).is_file())
        raise ConfigError(
            f"--ort-dir {given}: not an onnxruntime-web dist folder (it lacks {lacking}); "
            f"{INSTALL} (1.19 or newer) and pass --ort-dir node_modules/onnxruntime-web/dist"
        )
    candidates = [Path.cwd() / PACKAGE_DIST]
    root = _npm_root_global()
    if root is not None:
        candidates.append(root / "onnxruntime-web" / "dist")
    for candidate in candidates:
        if _complete(candidate):
            return OrtDist(candidate, _version(candidate))
    return _missing()


def _missing() -> OrtDist:
    raise ConfigError(
        "--web copies onnxruntime-web's wasm runtime into the site (never a CDN), and it is not "
        f"installed: {INSTALL} (here, or with -g), or pass --ort-dir PATH/onnxruntime-web/dist"
    )


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ORT_FILES)


def _npm_root_global() -> Path | None:
    """``npm root -g`` when npm is on the PATH and answers within 30 s, else None."""
    npm = shutil.which("npm")
    if npm is None:
        return None
    try:
        done = subprocess.run(
            [npm, "root", "-g"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    line = done.stdout.strip().splitlines()[-1:] if done.returncode == 0 else []
    return Path(line[0]) if line and line[0] else None


def _version(dist: Path) -> str:
    """The package's version (its package.json, else the bundle's banner), or ``unknown``."""
    try:
        data = json.loads((dist.parent / "package.json").read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("version"), str):
            return str(data["version"])
    except (OSError, ValueError):
        pass
    try:
        with open(dist / ORT_FILES[0], encoding="utf-8", errors="replace") as handle:
            found = re.search(r"ONNX Runtime Web v([\w.+-]+)", handle.read(2000))
    except OSError:
        found = None
    return found.group(1) if found else "unknown"


# --------------------------------------------------------------------------- the folder
def _is_site(folder: Path) -> bool:
    """True when ``folder`` holds a site this module wrote (its config.json says so)."""
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def check_site_dir(folder: Path) -> None:
    """ConfigError unless ``folder`` is absent, an empty folder or a site written before
    (replaced whole); anything else is not ours to overwrite."""
    if not os.path.lexists(folder):
        return
    if folder.is_symlink() or not folder.is_dir():
        raise ConfigError(f"--web {folder}: exists and is not a folder; name a new folder")
    if any(folder.iterdir()) and not _is_site(folder):
        raise ConfigError(
            f"--web {folder}: the folder holds other files (not a site chargen wrote); name a "
            "new or empty folder"
        )


def site_config(
    run: Path, config: Any, tokenizer: Any, model_bytes: int, parameters: int, quantize: str | None
) -> dict[str, Any]:
    """config.json: the graph's state inputs, the start token, defaults and the colour scale."""
    from chargen.checkpoint import MetricsLog
    from chargen.export_onnx import state_ports
    from chargen.generate import start_token
    from chargen.score import SURPRISAL_SCALE
    from chargen.seed_text import seed_text
    from chargen.version import __version__

    m = config.model
    metrics = MetricsLog(run).read()
    bits = [
        float(r["val_bits_per_char"])
        for r in metrics
        if isinstance(r.get("val_bits_per_char"), (int, float))
        and not isinstance(r.get("val_bits_per_char"), bool)
    ]
    prompt = seed_text(config, tokenizer, metrics)
    if m.family == "transformer":
        summary = (
            f"Transformer, {m.num_layers} blocks of width {m.hidden_size}, context {m.context_size}"
        )
    else:
        summary = f"{m.family.upper()}, {m.num_layers} × {m.hidden_size}"
    note = prompt.note or (
        "The run's own seed text; write anything the model knows the symbols of."
        if prompt.text
        else ""
    )
    return {
        "format": FORMAT,
        "chargen_version": __version__,
        "run": run.resolve().name or str(run),
        "model": {
            "file": MODEL_FILE,
            "bytes": model_bytes,
            "family": m.family,
            "summary": summary,
            "parameters": parameters,
            "quantize": quantize,
        },
        "state": [
            {"name": p.name, "shape": list(p.shape), "dtype": p.dtype} for p in state_ports(m)
        ],
        "vocab_size": tokenizer.vocab_size,
        "tokenizer": tokenizer.kind,
        "per": tokenizer.unit,
        "start_token": start_token(tokenizer),
        "prompt": prompt.text,
        "prompt_note": note,
        "lines": bool(config.data.lines),
        "defaults": {"temperature": DEFAULT_TEMPERATURE, "length": DEFAULT_LENGTH},
        "limits": {"length": MAX_LENGTH},
        "val_bits_per_char": min(bits) if bits else None,
        "surprisal_scale": SURPRISAL_SCALE,
    }


def write_site(
    folder: Path,
    run: Path,
    config: Any,
    tokenizer: Any,
    model_data: bytes,
    ort: OrtDist,
    quantize: str | None = None,
    parameters: int = 0,
) -> Site:
    """Write the site into ``folder`` (see the module notes): built in a sibling temporary
    folder, then put in place of ``folder`` (which ``check_site_dir`` allowed).
    ``parameters``: the model's, for the page's header."""
    check_site_dir(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name in PAGE_FILES:
            shutil.copyfile(TEMPLATE / name, staging / name)
        (staging / MODEL_FILE).write_bytes(model_data)
        (staging / "vocab.json").write_text(
            json.dumps(tokenizer.to_dict(), ensure_ascii=False), encoding="utf-8"
        )
        data = site_config(run, config, tokenizer, len(model_data), parameters, quantize)
        data["ort"] = {"version": ort.version, "files": list(ORT_FILES)}
        (staging / "config.json").write_text(
            json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        (staging / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copyfile(ort.path / name, staging / "ort" / name)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the site from a server's user
        sizes = {p.relative_to(staging).as_posix(): p.stat().st_size for p in _files(staging)}
        if os.path.lexists(folder):
            check_site_dir(folder)
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    runtime = sum(size for name, size in sizes.items() if name.startswith("ort/"))
    page = sum(sizes[name] for name in PAGE_FILES)
    return Site(sum(sizes.values()), len(sizes), runtime, page)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())
