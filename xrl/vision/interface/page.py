"""Work-item results -> the page's data (one JSON document) -> ``index.html`` that works from ``file://``.

The data schema (``"schema": "xrl-interface/1"``), as embedded in ``<script type="application/json" id="xrl-data">``::

    agent        label, kind, env_id, family, obs_shape [C, H, W], num_actions, action_names, channel_names
    settings     the build's arguments (trajectories, steps, observations, obs_every, features, layers,
                 integrate_steps, seed, gamma, gae_lambda, fv_steps, device)
    frame        height, width, pixelated (draw frames with nearest-neighbour zoom)
    layers       [{name, activation_shape [C, h, w], smoothing n, filter [n][n] (norm_filter), receptive_field,
                   reconstruction_error, features: [{color, thumbnail, dataset, fv}]}]   (image ids)
    default_layer  the middle layer
    trajectories [{length T, frames (sprite id), columns, strip (id), actions [T], rewards [T], firsts [T],
                   dones [T], values [T], advantages [T], logits [T][A], probs [T][A], episodes, episode_returns}]
    bookmarks    {high: [{trajectory, frame, advantage}], low: [...]}: at most one per episode, 16 per sign
    attribution  {kinds ["value", "action"], range R, items: {layer: [per trajectory: {kind: {totals [T][F],
                   residual [T], total [T], scale s, shape [T, h, w, F+1], blob (id)}}]}}
    images       {id: "data:image/png;base64,..." or "images/<id>.png" (beside index.html)}
    blobs        {id: base64 of zlib-compressed int8 codes; value = code / 127 * R * scale}
    timing       seconds per phase of the build

Numbers are rounded to 7 significant digits (float32 has about 7).
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import zlib
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .images import frame_sprite, frame_strip, png_bytes

__all__ = ["SCHEMA", "assemble_page", "write_page", "read_page_data", "validate_page_data", "decode_maps",
           "bookmarks", "INLINE_IMAGE_LIMIT"]

SCHEMA = "xrl-interface/1"
#: Above this many bytes of PNG the images are written beside index.html instead of inline.
INLINE_IMAGE_LIMIT = 24 * 1024 * 1024
_DATA_ID = "xrl-data"


def _round(x: Any, digits: int = 7) -> Any:
    """Nested lists of floats rounded to ``digits`` significant digits (JSON-ready)."""
    a = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(a == 0, 0, np.floor(np.log10(np.abs(np.where(a == 0, 1, a)))))
        scale = 10.0 ** (digits - 1 - mag)
        r = np.where(np.isfinite(a), np.round(a * scale) / scale, 0.0)
    return r.tolist()


def bookmarks(advantages: np.ndarray, dones: np.ndarray, *, num: int = 16) -> dict[str, list[dict]]:
    """The frames of highest and lowest advantage: at most one per episode, the ``num`` most extreme per sign.

    ``advantages``, ``dones``: ``[N, T]``. An episode runs to a frame with ``dones`` (or to the trajectory's end).
    """
    out = {}
    for sign, key in ((1.0, "high"), (-1.0, "low")):
        found = []
        for n in range(advantages.shape[0]):
            best, where = 0.0, None
            for t in range(advantages.shape[1]):
                score = sign * float(advantages[n, t])
                if score > best:
                    best, where = score, t
                if (dones[n, t] or t == advantages.shape[1] - 1) and where is not None:
                    found.append((best, n, where))
                    best, where = 0.0, None
        found.sort(key=lambda item: -item[0])
        out[key] = [{"trajectory": n, "frame": t, "advantage": _round(sign * s)} for s, n, t in found[:num]]
    return out


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{int(round(max(0.0, min(1.0, float(c))) * 255)):02x}" for c in rgb)


def assemble_page(config, info: dict[str, Any], results: dict[str, dict], *, timing: dict | None = None
                  ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Turn work-item results into the page data (see the module docstring) and its PNG images (id -> bytes).

    ``info`` is :func:`~xrl.vision.interface.agent.check_agent_env`'s answer plus ``family``.
    """
    from xrl.render import channel_colors, norm_filter

    from .agent import frames_rgb
    from .work import QUANT_RANGE, smoothing_length

    images: dict[str, bytes] = {}
    blobs: dict[str, str] = {}
    roll = results["rollouts"]
    family = info["family"]
    F = config.features
    colors = [_hex(c) for c in channel_colors(F)]
    trajectories = []
    H = W = None
    for n in range(config.trajectories):
        frames = frames_rgb(roll["obs"][n], family)                     # [T, H, W, 3]
        H, W = frames.shape[1:3]
        sprite, cols = frame_sprite(frames)
        images[f"t{n}_frames"] = png_bytes(sprite)
        images[f"t{n}_strip"] = png_bytes(frame_strip(frames))
        logits = roll["logits"][n].astype(np.float64)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        firsts, rewards = roll["firsts"][n], roll["rewards"][n]
        starts = np.flatnonzero(firsts)
        returns = [float(rewards[a:b].sum()) for a, b in zip(starts, list(starts[1:]) + [len(rewards)])]
        trajectories.append({
            "length": int(len(frames)), "frames": f"t{n}_frames", "columns": int(cols), "strip": f"t{n}_strip",
            "actions": roll["actions"][n].astype(int).tolist(), "rewards": _round(rewards),
            "firsts": firsts.astype(bool).tolist(), "dones": roll["dones"][n].astype(bool).tolist(),
            "values": _round(roll["values"][n]), "advantages": _round(roll["advantages"][n]),
            "logits": _round(logits), "probs": _round(probs), "episodes": int(firsts.sum()),
            "episode_returns": _round(returns)})
    layers, items = [], {}
    for li, layer in enumerate(config.layers):
        nmf = results[f"nmf:{layer}"]
        fv = results.get(f"fv:{layer}", {"images": []})
        C, h, w = nmf["activation_shape"]
        n_smooth = smoothing_length(h, w)
        features = []
        for f in range(F):
            entry = {"color": colors[f], "thumbnail": f"l{li}_f{f}_thumb", "dataset": f"l{li}_f{f}_dataset",
                     "fv": f"l{li}_f{f}_fv" if f < len(fv["images"]) else None}
            images[entry["thumbnail"]] = nmf["thumbnails"][f]
            images[entry["dataset"]] = nmf["dataset"][f]
            if entry["fv"]:
                images[entry["fv"]] = fv["images"][f]
            features.append(entry)
        layers.append({"name": layer, "activation_shape": [int(C), int(h), int(w)], "smoothing": n_smooth,
                       "filter": _round(norm_filter(n_smooth)), "receptive_field": nmf["receptive_field"],
                       "reconstruction_error": _round(nmf["reconstruction_error"]), "features": features})
        per_traj = []
        for n in range(config.trajectories):
            res = results[f"attr:{layer}:{n}"]
            entry = {}
            for kind in ("value", "action"):
                got = res.get(kind)
                if got is None:
                    continue
                blob_id = f"l{li}_t{n}_{kind}"
                blobs[blob_id] = base64.b64encode(got["codes"]).decode("ascii")
                entry[kind] = {"totals": _round(got["totals"]), "residual": _round(got["residual"]),
                               "total": _round(got["total"]), "scale": _round(got["scale"]),
                               "shape": [int(s) for s in got["shape"]], "blob": blob_id}
            per_traj.append(entry)
        items[layer] = per_traj
    kinds = [k for k in ("value", "action") if k in items[config.layers[0]][0]]
    data = {
        "schema": SCHEMA,
        "generator": {"xrl": _xrl_version(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "title": f"{config.source.label} - Understanding RL Vision",
        "agent": {"label": config.source.label, "kind": config.source.kind, "env_id": config.source.env_id,
                  "family": family, "obs_shape": list(info["obs_shape"]), "num_actions": info["num_actions"],
                  "action_names": info["action_names"], "channel_names": info["channel_names"]},
        "settings": {"trajectories": config.trajectories, "steps": config.steps, "observations": config.observations,
                     "obs_every": config.obs_every, "features": F, "layers": list(config.layers),
                     "integrate_steps": config.integrate_steps, "seed": config.seed, "gamma": config.gamma,
                     "gae_lambda": config.gae_lambda, "fv_steps": config.fv_steps, "device": config.device or "cpu"},
        "frame": {"height": int(H), "width": int(W), "pixelated": bool(max(H, W) <= 32)},
        "colors": {"features": colors, "residual": "#9a9a9a"},
        "layers": layers,
        "default_layer": config.layers[len(config.layers) // 2],
        "trajectories": trajectories,
        "bookmarks": bookmarks(roll["advantages"], roll["dones"]),
        "attribution": {"kinds": kinds, "range": QUANT_RANGE, "items": items},
        "blobs": blobs,
        "timing": timing or {},
    }
    return data, images


def _xrl_version() -> str:
    import xrl

    return getattr(xrl, "__version__", "?")


def _template(name: str) -> str:
    return resources.files("xrl.vision.interface").joinpath("template", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render_html(data: dict[str, Any]) -> str:
    """The page: template + inline CSS and JS (allowed by their hashes) + the data block; no external load."""
    style, script = _template("style.css"), _template("app.js")
    page = _template("index.html")
    csp = ("default-src 'none'; img-src 'self' data: blob:; style-src " + _csp_hash(style) + "; script-src " +
           _csp_hash(script) + "; connect-src 'none'; font-src 'none'; media-src 'none'; object-src 'none'; "
           "frame-src 'none'; worker-src 'none'; manifest-src 'none'; base-uri 'none'; form-action 'none'")
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    payload = payload.replace("</", "<\\/").replace("<!--", "<\\!--")
    # one pass over the template so that no replaced text is searched again
    fields = {"CSP": html.escape(csp, quote=True), "TITLE": html.escape(data.get("title", "xrl interface")),
              "STYLE": style, "SCRIPT": script, "DATA": payload, "DATA_ID": _DATA_ID}
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: fields[m.group(1)], page)


def write_page(out: str | Path, data: dict[str, Any], images: dict[str, bytes], *, overwrite: bool = False,
               inline_images: bool | None = None) -> Path:
    """Write ``out/index.html`` (and ``out/images/*.png`` when the images are not inline) as one transaction.

    ``inline_images`` None: inline (data URIs) unless the PNGs exceed :data:`INLINE_IMAGE_LIMIT` bytes. The data is
    checked with :func:`validate_page_data` before anything is written; the folder appears complete or not at all
    (:func:`xrl.io.atomic_directory`). Returns the path of ``index.html``.
    """
    from xrl.io import atomic_directory

    out = Path(out)
    check_output_folder(out, overwrite)
    total = sum(len(b) for b in images.values())
    inline = total <= INLINE_IMAGE_LIMIT if inline_images is None else bool(inline_images)
    data = dict(data)
    if inline:
        data["images"] = {k: "data:image/png;base64," + base64.b64encode(v).decode("ascii") for k, v in images.items()}
    else:
        data["images"] = {k: f"images/{k}.png" for k in images}
    validate_page_data(data, folder=None)
    text = render_html(data)
    with atomic_directory(out) as tmp:
        if not inline:
            (tmp / "images").mkdir()
            for k, v in images.items():
                (tmp / "images" / f"{k}.png").write_bytes(v)
        (tmp / "index.html").write_text(text, encoding="utf-8")
    return out / "index.html"


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty folder unless ``overwrite`` (and anything that is not a folder)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {str(out)!r} exists and is not a folder; choose a folder path for the page")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"out: the folder {str(out)!r} already exists and is not empty; pass overwrite=True "
                         "(--overwrite) to replace it, or choose another --out")


def read_page_data(path: str | Path) -> dict[str, Any]:
    """The data block of a written page (``index.html`` or its folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "index.html"
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="' + _DATA_ID + r'">(.*?)</script>', text, re.S)
    if m is None:
        raise ValueError(f"path: {str(path)!r} holds no xrl interface data block; is it a page written by "
                         "xrl.vision.interface?")
    return json.loads(m.group(1))


def decode_maps(data: dict[str, Any], layer: str, trajectory: int, kind: str = "value") -> np.ndarray:
    """The attribution maps of one page entry: float32 ``[T, h, w, F + 1]`` (features then residual), in the
    attribution's units (quantised to 1/127 of ``range`` display scales)."""
    entry = data["attribution"]["items"][layer][trajectory][kind]
    raw = zlib.decompress(base64.b64decode(data["blobs"][entry["blob"]]))
    codes = np.frombuffer(raw, dtype=np.int8).reshape(entry["shape"])
    return codes.astype(np.float32) / 127.0 * float(data["attribution"]["range"]) * float(entry["scale"])


def validate_page_data(data: dict[str, Any], *, folder: str | Path | None = None) -> None:
    """Check the structure and shapes of page data; raise ``ValueError`` listing every problem found.

    With ``folder``, images referenced as files must exist there.
    """
    problems: list[str] = []

    def need(cond: bool, text: str) -> bool:
        if not cond:
            problems.append(text)
        return cond

    if not need(isinstance(data, dict) and data.get("schema") == SCHEMA, f"schema: expected {SCHEMA!r}"):
        raise ValueError("page data: " + "; ".join(problems))
    for key in ("agent", "settings", "frame", "layers", "default_layer", "trajectories", "bookmarks", "attribution",
                "images", "blobs", "colors"):
        need(key in data, f"missing key {key!r}")
    if problems:
        raise ValueError("page data: " + "; ".join(problems))
    A = int(data["agent"]["num_actions"])
    need(len(data["agent"]["action_names"]) == A, "agent.action_names: one name per action")
    images, blobs = data["images"], data["blobs"]
    layer_names = [layer["name"] for layer in data["layers"]]
    need(data["default_layer"] in layer_names, "default_layer: not one of the layers")
    F = int(data["settings"]["features"])
    need(len(data["colors"]["features"]) == F, "colors.features: one colour per feature")
    for layer in data["layers"]:
        C, h, w = layer["activation_shape"]
        n = int(layer["smoothing"])
        need(np.shape(layer["filter"]) == (n, n), f"layers[{layer['name']}].filter: expected [{n}, {n}]")
        need(len(layer["features"]) == F, f"layers[{layer['name']}].features: expected {F}")
        for f in layer["features"]:
            for key in ("thumbnail", "dataset", "fv"):
                need(f.get(key) is None or f[key] in images, f"image {f.get(key)!r} missing")
    lengths = []
    for i, t in enumerate(data["trajectories"]):
        T = int(t["length"])
        lengths.append(T)
        for key in ("actions", "rewards", "firsts", "dones", "values", "advantages"):
            need(len(t[key]) == T, f"trajectories[{i}].{key}: expected {T} entries")
        need(np.shape(t["logits"]) == (T, A) and np.shape(t["probs"]) == (T, A),
             f"trajectories[{i}].logits/probs: expected [{T}, {A}]")
        if need(np.all(np.isfinite(np.asarray(t["probs"], float))), f"trajectories[{i}].probs: not finite"):
            need(np.allclose(np.sum(t["probs"], axis=1), 1.0, atol=1e-4),
                 f"trajectories[{i}].probs: rows must sum to 1")
        need(all(0 <= a < A for a in t["actions"]), f"trajectories[{i}].actions: outside [0, {A})")
        need(bool(t["firsts"][0]) if T else True, f"trajectories[{i}].firsts[0]: the first frame starts an episode")
        need(t["frames"] in images and t["strip"] in images, f"trajectories[{i}]: frame images missing")
    for sign in ("high", "low"):
        marks = data["bookmarks"].get(sign, [])
        need(len(marks) <= 16, f"bookmarks.{sign}: at most 16")
        for b in marks:
            ok = 0 <= b["trajectory"] < len(lengths) and 0 <= b["frame"] < lengths[b["trajectory"]]
            need(ok, f"bookmarks.{sign}: {b} outside the trajectories")
    items = data["attribution"]["items"]
    for layer in data["layers"]:
        C, h, w = layer["activation_shape"]
        per = items.get(layer["name"])
        if not need(per is not None and len(per) == len(lengths), f"attribution.items[{layer['name']}]: one entry per "
                    "trajectory"):
            continue
        for i, entry in enumerate(per):
            for kind in data["attribution"]["kinds"]:
                e = entry.get(kind)
                if not need(e is not None, f"attribution {layer['name']}/{i}: kind {kind!r} missing"):
                    continue
                T = lengths[i]
                need(list(e["shape"]) == [T, h, w, F + 1], f"attribution {layer['name']}/{i}/{kind}.shape: expected "
                     f"{[T, h, w, F + 1]}, got {e['shape']}")
                need(np.shape(e["totals"]) == (T, F) and len(e["residual"]) == T and len(e["total"]) == T,
                     f"attribution {layer['name']}/{i}/{kind}: totals [T, F], residual [T], total [T]")
                need(e["blob"] in blobs, f"attribution blob {e['blob']!r} missing")
                need(float(e["scale"]) > 0, f"attribution {layer['name']}/{i}/{kind}.scale: must be > 0")
    for key, ref in images.items():
        ok = isinstance(ref, str) and (ref.startswith("data:image/png;base64,") or ref.startswith("images/"))
        need(ok, f"images[{key!r}]: expected a PNG data URI or images/<file>")
        if ok and folder is not None and ref.startswith("images/"):
            need((Path(folder) / ref).is_file(), f"images[{key!r}]: file {ref} missing")
    if problems:
        raise ValueError(f"page data: {len(problems)} problem(s): " + "; ".join(problems[:12]) +
                         (" ..." if len(problems) > 12 else ""))
