"""metrics.json and a self-contained HTML report (PNG images inlined as base64, an SVG plot).

The report opens offline: no scripts, no fonts, no files next to it. Frame strips are drawn
with Pillow; the PSNR-vs-horizon plot is inline SVG (no plotting library needed).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from opengenie.atomic import atomic_write_bytes, atomic_write_text
from opengenie.eval.metrics import key_names

SCHEMA = "opengenie-eval/1"
GAP = 2  # pixels between frames in a strip
STRIP_WIDTH = 1100  # pixels of page width for a strip of frames
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null (strict parsers reject the bare tokens)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def metrics_json(metrics: dict[str, Any]) -> str:
    return json.dumps(_clean({"schema": SCHEMA, **metrics}), indent=2, allow_nan=False) + "\n"


def strip(frames: np.ndarray, scale: int = 2) -> Image.Image:
    """uint8 frames (T, H, W, 3) side by side, GAP white pixels apart, upscaled (nearest)."""
    t, h, w, _ = frames.shape
    canvas = np.full((h, t * w + (t - 1) * GAP, 3), 255, dtype=np.uint8)
    for i, frame in enumerate(frames):
        canvas[:, i * (w + GAP) : i * (w + GAP) + w] = frame
    image = Image.fromarray(canvas)
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_uri(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def action_label(code: int, names: dict[str, str]) -> str:
    """'action 3 (left)': a latent action and the movement eval paired it with, if any."""
    return f"action {code}" + (f" ({names[str(code)]})" if str(code) in names else "")


def _scale(frames: np.ndarray) -> int:
    """Integer upscaling (crisp pixels) as far as the page width allows for this strip."""
    width = frames.shape[0] * (frames.shape[2] + GAP)
    return max(1, min(3, STRIP_WIDTH // width))


def _img(frames: np.ndarray, alt: str, scale: int) -> str:
    # A scrolling box for anything wider than the page keeps the pixel scale of a figure.
    uri = png_uri(strip(frames, scale))
    return f'<div class="strip"><img src="{uri}" alt="{html.escape(alt)}"></div>'


def svg_plot(
    series: list[tuple[str, list[float], list[float]]],
    xlabel: str,
    ylabel: str,
    hlines: list[tuple[str, float]] | None = None,
    width: int = 640,
    height: int = 320,
    xticks: dict[float, str] | None = None,
) -> str:
    """A line plot as inline SVG: series of (label, xs, ys); hlines as dashed references;
    `xticks` names the x positions to label (default: every x value, as a number)."""
    hlines = [(lab, y) for lab, y in (hlines or []) if y is not None and math.isfinite(y)]
    pts = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if not pts:
        return "<p>(nothing to plot)</p>"
    xs_all = [p[0] for p in pts]
    ys_all = [p[1] for p in pts] + [y for _, y in hlines]
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = math.floor(min(ys_all) - 0.5), math.ceil(max(ys_all) + 0.5)
    x1 = x1 if x1 > x0 else x0 + 1
    left, right, top, bottom = 56, 180, 16, 44
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    ystep = max(1, math.ceil((y1 - y0) / 8))
    for yv in range(int(y0), int(y1) + 1, ystep):
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" '
            f'stroke="#eee"/><text x="{left - 6}" y="{sy(yv) + 4:.1f}" '
            f'text-anchor="end">{yv}</text>'
        )
    for xv, name in sorted((xticks or {x: f"{x:g}" for x in xs_all}).items()):
        out.append(
            f'<text x="{sx(xv):.1f}" y="{top + ph + 16}" text-anchor="middle">'
            f"{html.escape(name)}</text>"
        )
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">'
        f"{html.escape(xlabel)}</text>"
        f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" text-anchor="middle">'
        f"{html.escape(ylabel)}</text>"
    )
    legend_y = top + 8
    for i, (label, yv) in enumerate(hlines):
        c = "#777" if i == 0 else "#bbb"
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" '
            f'stroke="{c}" stroke-dasharray="5 4"/>'
            f'<line x1="{left + pw + 10}" x2="{left + pw + 30}" y1="{legend_y}" '
            f'y2="{legend_y}" stroke="{c}" stroke-dasharray="5 4"/>'
            f'<text x="{left + pw + 34}" y="{legend_y + 4}">{html.escape(label)}</text>'
        )
        legend_y += 16
    for i, (label, xs, ys) in enumerate(series):
        c = COLOURS[i % len(COLOURS)]
        good = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for x, y in good:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{c}"/>')
        out.append(
            f'<line x1="{left + pw + 10}" x2="{left + pw + 30}" y1="{legend_y}" '
            f'y2="{legend_y}" stroke="{c}" stroke-width="2"/>'
            f'<text x="{left + pw + 34}" y="{legend_y + 4}">{html.escape(label)}</text>'
        )
        legend_y += 16
    out.append("</svg>")
    return "\n".join(out)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
    return html.escape(str(value))


def _row(name: str, value: str, note: str = "") -> str:
    return f"<tr><th>{html.escape(name)}</th><td>{value}</td><td>{html.escape(note)}</td></tr>"


def _number_rows(metrics: dict[str, Any]) -> list[str]:
    """The table at the top of the report: each figure with what it was measured on."""
    tok, dyn, fvd, act, st = (
        metrics["tokenizer"],
        metrics["dynamics"],
        metrics["fvd"],
        metrics["actions"],
        metrics["settings"],
    )
    d = dyn["delta_t_psnr"]
    rows = [
        _row("tokenizer PSNR", f"{_fmt(tok['psnr'])} dB", f"{st['clip_frames']}-frame clips"),
        _row("tokenizer SSIM", _fmt(tok["ssim"], 4), ""),
        _row(
            "next-frame PSNR / SSIM (teacher-forced)",
            f"{_fmt(dyn['next_frame_psnr'])} dB / {_fmt(dyn['next_frame_ssim'], 4)}",
            "real context, one position per clip",
        ),
        _row(
            f"ΔtPSNR (t = {d['t']})",
            f"<b>{_fmt(d['value'])}</b> dB [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]",
            f"95% bootstrap; {d['label']}, {d['mode']} sampling, {d['clips']} clips",
        ),
        _row(
            f"frame-{d['t']} PSNR, inferred / random actions",
            f"{_fmt(d['frame_psnr'])} / {_fmt(d['frame_psnr_random'])} dB",
            "random: uniform over the codes in use",
        ),
    ]
    for e in dyn["delta_t_psnr_extra"]:
        rows.append(
            _row(
                f"ΔtPSNR (t = {e['t']}), {e['label']}",
                f"{_fmt(e['value'])} dB [{_fmt(e['ci_low'])}, {_fmt(e['ci_high'])}]",
                f"frame PSNR {_fmt(e['frame_psnr'])} / {_fmt(e['frame_psnr_random'])} dB",
            )
        )
    if fvd.get("value") is not None:
        rows.append(_row(f"FVD@{fvd['n']}", f"<b>{_fmt(fvd['value'], 1)}</b>", "I3D Kinetics-400"))
    else:
        rows.append(_row(f"FVD@{fvd['n']}", "n/a", fvd.get("reason") or ""))
    used = ", ".join(str(c) for c in act["codes_used"])
    rows.append(_row("latent action codes in use", used, f"of {act['num_codes']} (>= 1%)"))
    if act.get("nmi") is not None:
        rows.append(
            _row(
                "action NMI / best-mapping accuracy",
                f"{_fmt(act['nmi'], 3)} / {_fmt(act['accuracy'], 3)}",
                f"one-to-one accuracy {_fmt(act['accuracy_one_to_one'], 3)}; "
                f"groups: {', '.join(act['groups'])}",
            )
        )
    else:
        rows.append(_row("action NMI", "n/a", act.get("reason", "")))
    return rows


def _horizon_plot(metrics: dict[str, Any]) -> str:
    """PSNR of rollouts and of teacher-forced next frames against the horizon (SVG)."""
    tok, dyn = metrics["tokenizer"], metrics["dynamics"]
    d = dyn["delta_t_psnr"]
    horizon = list(range(1, len(dyn["rollout_psnr"]) + 1))
    return svg_plot(
        [
            ("rollout, inferred actions", horizon, dyn["rollout_psnr"]),
            (
                "teacher-forced next frame",
                horizon,
                [v if v is not None else math.nan for v in dyn["next_frame_psnr_by_position"]],
            ),
            (f"frame {d['t']}, random actions", [d["t"]], [d["frame_psnr_random"]]),
        ],
        "frames after the prompt",
        "PSNR (dB)",
        hlines=[("tokenizer reconstruction", tok["psnr"])],
    )


def _clip_sections(pictures: dict[str, Any]) -> list[str]:
    """Real frames beside their reconstructions, and beside the world's rollouts."""
    sections, clips = [], pictures.get("clips") or []
    if pictures.get("recon") is not None:
        body, k = [], _scale(pictures["real"][0])
        for i in range(len(pictures["recon"])):
            ep, start = clips[i]
            body.append(
                f"<p>episode {ep}, frames {start}..</p><table>"
                f"<tr><th>real</th><td>{_img(pictures['real'][i], 'real', k)}</td></tr>"
                f"<tr><th>reconstructed</th><td>{_img(pictures['recon'][i], 'recon', k)}</td></tr>"
                "</table>"
            )
        sections.append("<h2>Real vs reconstructed</h2>" + "".join(body))
    if pictures.get("generated") is not None:
        body, k = [], _scale(pictures["real"][0])
        for i in range(min(len(pictures["generated"]), len(clips))):
            ep, start = clips[i]
            rnd = pictures["random"][i] if pictures.get("random") is not None else None
            body.append(
                f"<p>episode {ep}, frames {start}.. (the first frame is the prompt)</p><table>"
                f"<tr><th>real</th><td>{_img(pictures['real'][i], 'real', k)}</td></tr>"
                f"<tr><th>generated, inferred actions</th>"
                f"<td>{_img(pictures['generated'][i], 'generated', k)}</td></tr>"
                + (
                    f"<tr><th>generated, random actions</th><td>{_img(rnd, 'random', k)}</td></tr>"
                    if rnd is not None
                    else ""
                )
                + "</table>"
            )
        sections.append("<h2>Real vs generated rollouts</h2>" + "".join(body))
    return sections


def _button_sections(pictures: dict[str, Any], act: dict[str, Any]) -> list[str]:
    """One strip per latent action, repeated from each start frame ("what each button does")."""
    sections, names = [], key_names(act.get("keys") or {})
    for i, strips in enumerate(pictures.get("buttons") or []):
        body, k = [], _scale(strips[0])
        for code in range(len(strips)):
            label = action_label(code, names)
            if code not in act["codes_used"]:
                label += " — rarely used"
            body.append(
                f"<tr><th>{html.escape(label)}</th><td>{_img(strips[code], label, k)}</td></tr>"
            )
        sections.append(
            f"<h2>What each button does (start frame {i + 1})</h2>"
            f"<p>Each latent action repeated for {len(strips[0]) - 1} frames.</p>"
            "<table>" + "".join(body) + "</table>"
        )
    return sections


_STYLE = (
    "body{font-family:sans-serif;max-width:1340px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{text-align:left;padding:3px 10px;"
    "vertical-align:middle}th{font-weight:normal;color:#444;white-space:nowrap}"
    "img{image-rendering:pixelated}.strip{overflow-x:auto;max-width:1110px}"
    "pre{background:#f6f6f6;padding:.6em;font-size:12px}"
)


def render_html(metrics: dict[str, Any], pictures: dict[str, Any], title: str) -> str:
    """The report page: numbers with their settings, the plot, and the frame strips."""
    settings = html.escape(json.dumps(metrics["settings"], indent=1))
    sections = [
        f"<h2>Settings</h2><pre>{settings}</pre>",
        "<h2>PSNR against the horizon</h2>" + _horizon_plot(metrics),
        *_clip_sections(pictures),
        *_button_sections(pictures, metrics["actions"]),
    ]
    if metrics.get("control"):
        sections.append(control_html(metrics["control"], pictures.get("control") or {}))
    timing = "\n".join(f"{k}: {v:.1f} s" for k, v in metrics.get("timing", {}).items())
    sections.append(f"<h2>Runtime</h2><pre>{html.escape(timing)}</pre>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table>{''.join(_number_rows(metrics))}</table>"
        + "".join(sections)
        + "</body></html>\n"
    )


def _px(value: Any) -> str:
    return "—" if value is None else f"{value:+.1f}"


def control_summary(c: dict[str, Any]) -> str:
    """One line of the control bars for the terminal."""
    b = c["bars"]
    return (
        f"control ({len(c['levels'])} levels): → same way {_fmt(b['right_first_same_way'])} "
        f"(the tokenizer's ceiling {_fmt(b.get('right_first_same_way_ceiling'))}), "
        f"← (mid) {_fmt(b['left_mid_same_way'])} ({_fmt(b.get('left_mid_same_way_ceiling'))}), "
        f"↑ dy sign {_fmt(b['jump_dy8_same_sign'])}, "
        f"still frame-16 PSNR {_fmt(b['still_psnr16'])} dB (the tokenizer's ceiling "
        f"{_fmt(b.get('still_psnr16_ceiling'))}), LAM ←/→/still distinct "
        f"{b['lam_left_right_still_distinct']}, held NMI {_fmt(b['lam_held_nmi'], 3)}"
    )


def control_html(c: dict[str, Any], pictures: dict[str, Any]) -> str:
    """The control section: a table per start kind, the LAM's codes, a picture per key."""
    head = (
        "<tr><th>key</th><th>code</th><th>cases</th><th>game dx / dy (px, frame "
        f"{c['frames']})</th><th>world dx / dy</th><th>same way (x) / tokenizer</th>"
        f"<th>dy sign (frame "
        f"{c['frames'] // 2})</th><th>PSNR world / copy / tokenizer, frame {c['frames'] // 2}</th>"
        f"<th>frame {c['frames']}</th></tr>"
    )
    parts = [
        "<h2>Control: held keys against the game</h2>",
        f"<p>{html.escape(control_summary(c))}. Scroll is the camera's: dx &gt; 0 right, dy &gt; 0 "
        f"up. Same way: the world's dx has the game's sign and lies within "
        f"{html.escape(c['settings']['tolerance'])}, where the game moves "
        f"≥ {c['settings']['moving_px']:g} px. The tokenizer's figures score its own "
        "reconstruction of the game's frames as a world: what a dynamics model that predicted "
        "the game exactly would score.</p>",
    ]
    for kind in c["start_kinds"]:
        rows = []
        for name, mv in c["movements"].items():
            case = mv.get(kind) or {}
            w = case.get("world") or {}
            if not case.get("cases"):
                continue
            code = "—" if mv["code"] is None else mv["code"]
            psnr8, psnr16 = w.get("psnr") or [None, None]
            ceil8, ceil16 = case.get("tokenizer_psnr") or [None, None]
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{code}</td><td>{case['cases']}</td>"
                f"<td>{_px(case['game_dx'][1])} / {_px(case['game_dy'][1])}</td>"
                f"<td>{_px((w.get('dx') or [None, None])[1])} / "
                f"{_px((w.get('dy') or [None, None])[1])}</td>"
                f"<td>{_fmt(w.get('same_way_x'))} ({w.get('moving_x_cases', 0)}) / "
                f"{_fmt(case.get('tokenizer_same_way_x'))}</td>"
                f"<td>{_fmt(w.get('same_sign_y'))} ({w.get('moving_y_cases', 0)})</td>"
                f"<td>{_fmt(psnr8)} / {_fmt(case['copy_psnr'][0])} / {_fmt(ceil8)}</td>"
                f"<td>{_fmt(psnr16)} / {_fmt(case['copy_psnr'][1])} / {_fmt(ceil16)}</td>"
                "</tr>"
            )
        parts.append(f"<h3>From {kind} starts</h3><table>{head}{''.join(rows)}</table>")
    lam = c["lam"]
    cells = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{v['dominant_code']}</td><td>{_fmt(v['share'])}</td></tr>"
        for n, v in lam["per_movement"].items()
    )
    parts.append(
        f"<h3>The LAM's codes on the game's held-key videos ({html.escape(lam['start'])} starts)"
        f"</h3><p>NMI {_fmt(lam['nmi'], 3)}</p><table><tr><th>key</th><th>dominant code</th>"
        f"<th>share</th></tr>{cells}</table>"
    )
    for name, (game, world, level) in pictures.items():
        if world is None:
            label = f"{name}, level {level}: the game (no latent action is paired with this key)"
            both = game
        else:
            label = f"{name}, level {level}: game above, world below"
            both = np.concatenate([game, world], axis=1)  # (1+F, 2H, W, 3)
        parts.append(f"<h3>{html.escape(label)}</h3>{_img(both, label, _scale(both))}")
    return "".join(parts)


def labelled_rows(rows: list[tuple[str, np.ndarray]], scale: int = 2) -> Image.Image:
    """Frame strips stacked one under another, each with its label on the left (one PNG)."""
    from PIL import ImageDraw

    strips = [strip(frames, scale) for _, frames in rows]
    label_w, gap = 150, 4
    width = label_w + max(s.width for s in strips)
    height = sum(s.height for s in strips) + gap * (len(strips) - 1)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for (label, _), image in zip(rows, strips, strict=True):
        canvas.paste(image, (label_w, y))
        draw.text((4, y + image.height // 2 - 6), label, fill="black")
        y += image.height + gap
    return canvas


def figures(metrics: dict[str, Any], pictures: dict[str, Any]) -> dict[str, Image.Image]:
    """The report's key pictures as PNGs, for READMEs and model cards (name -> image)."""

    def count(key: str) -> int:  # arrays or lists; None when absent
        value = pictures.get(key)
        return 0 if value is None else len(value)

    out = {}
    for i in range(min(2, count("recon"))):
        rows = [("real", pictures["real"][i]), ("reconstructed", pictures["recon"][i])]
        out[f"reconstruction_{i}.png"] = labelled_rows(rows)
    for i in range(min(2, count("generated"))):
        rows = [("real", pictures["real"][i]), ("generated", pictures["generated"][i])]
        if pictures.get("random") is not None:
            rows.append(("random actions", pictures["random"][i]))
        out[f"rollout_{i}.png"] = labelled_rows(rows)
    names = key_names((metrics.get("actions") or {}).get("keys") or {})
    for i in range(count("buttons")):
        rows = [(action_label(code, names), f) for code, f in enumerate(pictures["buttons"][i])]
        out[f"actions_{i}.png"] = labelled_rows(rows)
    for name, (game, world, level) in (pictures.get("control") or {}).items():
        rows = [(f"game, level {level}", game)]
        rows.append(
            (f"world: {name}", world) if world is not None else (f"{name}: no code", game[:1])
        )
        out[f"control_{name.replace('+', '_').replace('/', '_')}.png"] = labelled_rows(rows)
    return out


def write_report(
    out_dir: str | os.PathLike, metrics: dict[str, Any], pictures: dict[str, Any], title: str
) -> tuple[Path, Path]:
    """Write metrics.json, report.html and images/*.png (each atomically) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", metrics_json(metrics))  # the numbers first
    atomic_write_text(out / "report.html", render_html(metrics, pictures, title))
    for name, image in figures(metrics, pictures).items():
        atomic_write_bytes(out / "images" / name, png_bytes(image))
    return out / "metrics.json", out / "report.html"
