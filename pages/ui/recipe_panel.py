"""Recipe controls: a preset select plus an advanced panel with a widget for every recipe field.

Widget values live in ``st.session_state`` under ``rp.*`` keys. Picking a preset writes the
preset's full recipe (defaults filled in by the ``Recipe`` model) into those keys; the panel
then reads them back into a recipe dict, validated by ``imagepipe.core.recipe.parse_recipe``.
"""

from __future__ import annotations

import base64
from typing import Any

import streamlit as st

import pipeline  # noqa: F401  (puts lambda_src on sys.path)
from imagepipe.core.recipe import Recipe, parse_recipe
from imagepipe.errors import InvalidRecipe
from pipeline.presets import DEFAULT_PRESET, get_preset, preset_names

P = "rp."
FORMATS = ["jpeg", "png", "webp", "avif", "jxl", "gif", "original", "best"]
JPEG_ENCODERS = ["turbo", "mozjpeg", "jpegli"]
CANDIDATES = ["jpeg", "jpeg:turbo", "jpeg:mozjpeg", "jpeg:jpegli", "webp", "avif", "jxl", "png", "gif"]
FITS = ["inside", "contain", "cover", "fill"]
FILTERS = ["lanczos", "bicubic", "bilinear", "hamming", "box", "nearest"]
SUBSAMPLING = ["4:2:0", "4:2:2", "4:4:4", "auto"]
#: mozjpeg quant tables (libvips 0–8); "default" = 3; "auto" = the auto-quality search picks one
#: (needs quality auto with a target: the backend refuses it otherwise, naming jpeg.quant_table)
QUANT_TABLES = ["default", "auto", 0, 1, 2, 3, 4, 5, 6, 7, 8]
METADATA = ["strip", "keep", "keep_copyright_icc"]
COLOR = ["srgb", "keep"]
POSITIONS = [
    "top-left",
    "top",
    "top-right",
    "left",
    "center",
    "right",
    "bottom-left",
    "bottom",
    "bottom-right",
    "tiled",
]
POSITION_GLYPHS = {
    "top-left": "↖",
    "top": "↑",
    "top-right": "↗",
    "left": "←",
    "center": "•",
    "right": "→",
    "bottom-left": "↙",
    "bottom": "↓",
    "bottom-right": "↘",
    "tiled": "▦ tiled",
}
WATERMARK_KINDS = ["none", "text", "image"]


def recipe_to_state(recipe: dict[str, Any]) -> dict[str, Any]:
    """Widget values (``rp.*`` keys) for ``recipe``, every default filled in."""
    r = Recipe.model_validate(recipe).model_dump(mode="json")
    resize = r["resize"] or {}
    wm = r["watermark"] or {}
    target = r["target"] or {}
    return {
        P + "resize.on": r["resize"] is not None,
        P + "resize.width": resize.get("width") or 0,
        P + "resize.height": resize.get("height") or 0,
        P + "resize.fit": resize.get("fit", "inside"),
        P + "resize.upscale": bool(resize.get("upscale", False)),
        P + "resize.filter": resize.get("filter", "lanczos"),
        P + "format": r["format"],
        P + "quality.auto": r["quality"] == "auto",
        P + "quality": 80 if r["quality"] == "auto" else int(r["quality"]),
        P + "goal": "max_bytes" if r["max_bytes"] is not None and not target else "target",
        P + "target.metric": target.get("metric", "ssim"),
        P + "target.min": float(target.get("min", 0.95)),
        P + "max_bytes": int(r["max_bytes"] or 200_000),
        P + "jpeg.progressive": r["jpeg"]["progressive"],
        P + "jpeg.optimize": r["jpeg"]["optimize"],
        P + "jpeg.subsampling": r["jpeg"]["subsampling"],
        P + "jpeg.encoder": r["jpeg"]["encoder"],
        P + "jpeg.quant_table": ("default" if r["jpeg"].get("quant_table") is None
                                 else r["jpeg"]["quant_table"]),
        P + "avif.subsampling": r["avif"]["subsampling"],
        P + "jxl.effort": r["jxl"]["effort"],
        P + "jxl.lossless": r["jxl"]["lossless"],
        P + "candidates": list(r["candidates"] or []),
        P + "webp.method": r["webp"]["method"],
        P + "webp.lossless": r["webp"]["lossless"],
        P + "avif.speed": r["avif"]["speed"],
        P + "png.compress_level": r["png"]["compress_level"],
        P + "png.palette": r["png"]["palette"],
        P + "png.colors": r["png"]["colors"],
        P + "metadata": r["metadata"],
        P + "color": r["color"],
        P + "background": _long_hex(r["background"]),
        P + "ops.grayscale": r["ops"]["grayscale"],
        P + "ops.sharpen": float(r["ops"]["sharpen"]),
        P + "ops.blur": float(r["ops"]["blur"]),
        P + "wm.kind": "none" if not wm else ("image" if wm.get("image_b64") else "text"),
        P + "wm.text": wm.get("text") or "© ImagePipe",
        P + "wm.image_b64": wm.get("image_b64"),
        P + "wm.position": wm.get("position", "bottom-right"),
        P + "wm.opacity": float(wm.get("opacity", 0.5)),
        P + "wm.scale": float(wm.get("scale", 0.25)),
        P + "wm.margin": float(wm.get("margin", 0.02)),
        P + "anim.keep": r["animation"]["keep"],
        P + "anim.max_frames": r["animation"]["max_frames"],
    }


def state_to_recipe(s: dict[str, Any]) -> dict[str, Any]:
    """The recipe dict the widget values describe (not yet validated)."""
    recipe: dict[str, Any] = {"version": 1}
    if s[P + "resize.on"]:
        recipe["resize"] = {
            "width": int(s[P + "resize.width"]) or None,
            "height": int(s[P + "resize.height"]) or None,
            "fit": s[P + "resize.fit"],
            "upscale": bool(s[P + "resize.upscale"]),
            "filter": s[P + "resize.filter"],
        }
    else:
        recipe["resize"] = None
    recipe["format"] = s[P + "format"]
    if s[P + "quality.auto"]:
        recipe["quality"] = "auto"
        if s[P + "goal"] == "target":
            recipe["target"] = {"metric": s[P + "target.metric"], "min": float(s[P + "target.min"])}
        else:
            recipe["max_bytes"] = int(s[P + "max_bytes"])
    else:
        recipe["quality"] = int(s[P + "quality"])
    recipe["jpeg"] = {
        "progressive": bool(s[P + "jpeg.progressive"]),
        "optimize": bool(s[P + "jpeg.optimize"]),
        "subsampling": s[P + "jpeg.subsampling"],
        "encoder": s.get(P + "jpeg.encoder", "turbo"),
    }
    table = s.get(P + "jpeg.quant_table", "default")
    if table == "auto":
        recipe["jpeg"]["quant_table"] = "auto"
    elif table != "default":
        recipe["jpeg"]["quant_table"] = int(table)
    recipe["webp"] = {"method": int(s[P + "webp.method"]), "lossless": bool(s[P + "webp.lossless"])}
    recipe["avif"] = {"speed": int(s[P + "avif.speed"]),
                      "subsampling": s.get(P + "avif.subsampling", "4:2:0")}
    recipe["jxl"] = {"effort": int(s.get(P + "jxl.effort", 7)),
                     "lossless": bool(s.get(P + "jxl.lossless", False))}
    if recipe["format"] == "best" and s.get(P + "candidates"):
        recipe["candidates"] = list(s[P + "candidates"])
    recipe["png"] = {
        "compress_level": int(s[P + "png.compress_level"]),
        "palette": bool(s[P + "png.palette"]),
        "colors": int(s[P + "png.colors"]),
    }
    recipe["metadata"] = s[P + "metadata"]
    recipe["color"] = s[P + "color"]
    recipe["background"] = s[P + "background"]
    recipe["ops"] = {
        "grayscale": bool(s[P + "ops.grayscale"]),
        "sharpen": float(s[P + "ops.sharpen"]),
        "blur": float(s[P + "ops.blur"]),
    }
    kind = s[P + "wm.kind"]
    if kind != "none":
        recipe["watermark"] = {
            "text": s[P + "wm.text"] if kind == "text" else None,
            "image_b64": s.get(P + "wm.image_b64") if kind == "image" else None,
            "position": s[P + "wm.position"] or "bottom-right",
            "opacity": float(s[P + "wm.opacity"]),
            "scale": float(s[P + "wm.scale"]),
            "margin": float(s[P + "wm.margin"]),
        }
    recipe["animation"] = {"keep": bool(s[P + "anim.keep"]), "max_frames": int(s[P + "anim.max_frames"])}
    return recipe


def _long_hex(color: str) -> str:
    """``#abc`` -> ``#aabbcc`` (``st.color_picker`` wants six digits)."""
    if len(color) == 4:
        return "#" + "".join(c * 2 for c in color[1:])
    return color.lower()


def _apply_preset() -> None:
    """on_change of the preset select: load that preset into every advanced widget."""
    name = st.session_state[P + "preset"]
    st.session_state.update(recipe_to_state(get_preset(name)))


SAVED = "_rp_saved"


def _ensure_state() -> None:
    """First run: load the default preset. Back from another page: restore the saved values.

    Streamlit forgets a widget's value when a run does not draw it (another page was shown),
    so the values are also kept under a plain key after every run.
    """
    if P + "format" in st.session_state:
        return
    saved = st.session_state.get(SAVED)
    if saved:
        st.session_state.update(saved)
        return
    st.session_state[P + "preset"] = st.session_state.get(P + "preset", DEFAULT_PRESET)
    st.session_state.update(recipe_to_state(get_preset(st.session_state[P + "preset"])))


def render() -> tuple[dict[str, Any] | None, str]:
    """Draw the controls; return ``(valid recipe dict or None, preset label)``."""
    _ensure_state()
    st.selectbox(
        "Preset",
        preset_names(),
        key=P + "preset",
        on_change=_apply_preset,
        help="A named recipe. Fine-tune it in the advanced panel below.",
    )
    with st.expander("Advanced recipe", expanded=False):
        _advanced()
    values = {
        k: v
        for k, v in st.session_state.items()
        # buttons and the file uploader cannot be set through session_state: not saved
        if isinstance(k, str) and k.startswith(P) and k != P + "wm.file" and not k.startswith(P + "wm.pos.")
    }
    st.session_state[SAVED] = values
    recipe = state_to_recipe(values)
    try:
        validated = parse_recipe(recipe)
    except InvalidRecipe as exc:
        st.error(f"Invalid recipe ({exc.code}): {exc.message}")
        st.dataframe(exc.details or [], hide_index=True)
        return None, st.session_state[P + "preset"]
    label = st.session_state[P + "preset"]
    if validated.recipe_hash() != Recipe.model_validate(get_preset(label)).recipe_hash():
        label = f"{label} (modified)"
    return validated.model_dump(mode="json"), label


def _set_position(position: str) -> None:
    st.session_state[P + "wm.position"] = position


def _position_grid(disabled: bool) -> None:
    """A 3×3 grid of buttons (plus *tiled*): the selected position is the primary-coloured one."""
    current = st.session_state.get(P + "wm.position", "bottom-right")
    st.caption("Position (3×3 grid or tiled)")
    with st.container(width=200):
        for row in range(3):
            for col, position in zip(
                st.columns(3, gap="small"), POSITIONS[row * 3 : row * 3 + 3], strict=True
            ):
                col.button(
                    POSITION_GLYPHS[position],
                    key=f"{P}wm.pos.{position}",
                    help=position,
                    type="primary" if position == current else "secondary",
                    width="stretch",
                    on_click=_set_position,
                    args=(position,),
                    disabled=disabled,
                )
        st.button(
            POSITION_GLYPHS["tiled"],
            key=f"{P}wm.pos.tiled",
            help="repeat over the whole image",
            type="primary" if current == "tiled" else "secondary",
            width="stretch",
            on_click=_set_position,
            args=("tiled",),
            disabled=disabled,
        )


def _advanced() -> None:
    tab_size, tab_fmt, tab_look, tab_wm = st.tabs(
        ["Resize", "Format & quality", "Colour & metadata", "Watermark"]
    )
    with tab_size:
        st.checkbox("Resize", key=P + "resize.on")
        on = st.session_state[P + "resize.on"]
        c1, c2 = st.columns(2)
        c1.number_input(
            "Width (0 = follow height)", 0, 20000, step=10, key=P + "resize.width", disabled=not on
        )
        c2.number_input(
            "Height (0 = follow width)", 0, 20000, step=10, key=P + "resize.height", disabled=not on
        )
        c1.selectbox(
            "Fit",
            FITS,
            key=P + "resize.fit",
            disabled=not on,
            help="inside: fit in the box, never crop · contain: fit and pad with the background · "
            "cover: fill the box and crop · fill: stretch",
        )
        c2.selectbox("Filter", FILTERS, key=P + "resize.filter", disabled=not on)
        st.checkbox("Allow upscaling", key=P + "resize.upscale", disabled=not on)
    with tab_fmt:
        c1, c2 = st.columns(2)
        c1.selectbox(
            "Format",
            FORMATS,
            key=P + "format",
            help="original keeps the input's format; best picks the smallest of its candidates "
            "(default JPEG/WebP/AVIF)",
        )
        auto = c2.checkbox(
            "Auto quality",
            key=P + "quality.auto",
            help='quality "auto": search for the smallest file meeting a goal',
        )
        c2.slider("Quality", 1, 100, key=P + "quality", disabled=auto)
        goal = st.session_state[P + "goal"]
        g1, g2, g3 = st.columns(3)
        g1.radio(
            "Auto goal",
            ["target", "max_bytes"],
            key=P + "goal",
            disabled=not auto,
            format_func=lambda g: "minimum quality score" if g == "target" else "maximum size",
        )
        g2.selectbox(
            "Metric", ["ssim", "ssimulacra2"], key=P + "target.metric", disabled=not auto or goal != "target"
        )
        g2.number_input(
            "Minimum score",
            -100.0,
            100.0,
            step=0.005,
            format="%.3f",
            key=P + "target.min",
            disabled=not auto or goal != "target",
            help="SSIM: 0–1 (e.g. 0.95). SSIMULACRA2: up to 100 (≈ 90 visually lossless, ≈ 70 high quality)",
        )
        g3.number_input(
            "Maximum bytes",
            100,
            50_000_000,
            step=10_000,
            key=P + "max_bytes",
            disabled=not auto or goal != "max_bytes",
        )
        st.caption("Codec options (each applies only when that format is written)")
        j, w, a, p = st.columns(4)
        j.markdown("**JPEG**")
        j.checkbox("Progressive", key=P + "jpeg.progressive")
        j.checkbox("Optimize", key=P + "jpeg.optimize")
        j.selectbox("Subsampling", SUBSAMPLING, key=P + "jpeg.subsampling")
        j.selectbox("Encoder", JPEG_ENCODERS, key=P + "jpeg.encoder",
                    help="turbo = libjpeg-turbo; mozjpeg = smaller, ≈5× slower; jpegli = baseline 4:2:0 only")
        j.selectbox("Quant table (mozjpeg)", QUANT_TABLES, key=P + "jpeg.quant_table",
                    help="libvips' mozjpeg tables; default 3; 2 (MS-SSIM tuned) was smallest at equal "
                         "SSIMULACRA2 on the corpus; auto (with quality auto and a target) searches "
                         "several tables and keeps the smallest answer")
        w.markdown("**WebP**")
        w.slider("Method", 0, 6, key=P + "webp.method")
        w.checkbox("Lossless", key=P + "webp.lossless")
        a.markdown("**AVIF**")
        a.slider("Speed", 0, 10, key=P + "avif.speed")
        a.selectbox("Chroma", ["4:2:0", "4:4:4", "auto"], key=P + "avif.subsampling")
        a.markdown("**JPEG XL**")
        a.slider("Effort", 1, 9, key=P + "jxl.effort")
        a.checkbox("Lossless JXL", key=P + "jxl.lossless")
        st.multiselect("Candidates for best (empty = JPEG/WebP/AVIF)", CANDIDATES, key=P + "candidates",
                       disabled=st.session_state.get(P + "format") != "best")
        p.markdown("**PNG**")
        p.slider("Compress level", 0, 9, key=P + "png.compress_level")
        p.checkbox("Palette", key=P + "png.palette")
        p.number_input("Colours", 2, 256, key=P + "png.colors")
        st.checkbox("Keep animation (GIF/WebP)", key=P + "anim.keep")
        st.number_input(
            "Max frames", 1, 1000, key=P + "anim.max_frames", disabled=not st.session_state[P + "anim.keep"]
        )
    with tab_look:
        c1, c2, c3 = st.columns(3)
        c1.selectbox("Metadata", METADATA, key=P + "metadata")
        c2.selectbox("Colour", COLOR, key=P + "color", help="srgb converts ICC-tagged images to sRGB")
        c3.color_picker("Background (for transparency → JPEG, contain padding)", key=P + "background")
        c1.checkbox("Grayscale", key=P + "ops.grayscale")
        c2.slider("Sharpen", 0.0, 10.0, step=0.1, key=P + "ops.sharpen")
        c3.slider("Blur radius", 0.0, 100.0, step=0.5, key=P + "ops.blur")
    with tab_wm:
        kind = st.radio("Watermark", WATERMARK_KINDS, key=P + "wm.kind", horizontal=True)
        st.text_input("Text", max_chars=200, key=P + "wm.text", disabled=kind != "text")
        if kind == "image":
            logo = st.file_uploader(
                "Watermark image (PNG or WebP with transparency)", type=["png", "webp"], key=P + "wm.file"
            )
            if logo is not None:
                st.session_state[P + "wm.image_b64"] = base64.b64encode(logo.getvalue()).decode()
        _position_grid(disabled=kind == "none")
        c1, c2, c3 = st.columns(3)
        c1.slider("Opacity", 0.0, 1.0, step=0.05, key=P + "wm.opacity", disabled=kind == "none")
        c2.slider(
            "Scale (of the image width)", 0.01, 1.0, step=0.01, key=P + "wm.scale", disabled=kind == "none"
        )
        c3.slider("Margin", 0.0, 0.5, step=0.01, key=P + "wm.margin", disabled=kind == "none")
