"""Generate the small demo images the dashboard offers under "Use sample images".

Run: ``.venv/bin/python samples/make_samples.py`` (deterministic; rewrites the files next to
this script). Everything is drawn in code, so no third-party photos ship in the repo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled with bicubic interpolation."""
    coarse = rng.random((h // scale + 2, w // scale + 2)).astype(np.float32)
    img = Image.fromarray((coarse * 255).astype(np.uint8)).resize((w + 2 * scale, h + 2 * scale),
                                                                  Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)[scale:scale + h, scale:scale + w] / 255.0


def landscape(w: int = 960, h: int = 640) -> Image.Image:
    """A photo-like scene: sky gradient, sun, layered hills with texture, grain."""
    rng = np.random.default_rng(7)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    sky = np.stack([0.35 + 0.5 * y + 0 * x, 0.55 + 0.35 * y + 0 * x, 0.95 - 0.1 * y + 0 * x], axis=-1)
    sun = np.exp(-(((x - 0.72) ** 2) + ((y - 0.28) * 1.5) ** 2) / 0.004)[..., None]
    img = sky + sun * np.array([0.6, 0.45, 0.1], dtype=np.float32)
    palette = [(0.25, 0.45, 0.30), (0.18, 0.36, 0.22), (0.10, 0.25, 0.14)]
    for i, colour in enumerate(palette):
        wobble = 0.05 * (_smooth_noise(rng, 1, w, 40) - 0.5)
        ridge = 0.45 + 0.13 * i + 0.08 * np.sin(x * (5 + 3 * i) + i) + wobble
        mask = (y > ridge).astype(np.float32)
        texture = 0.75 + 0.5 * _smooth_noise(rng, h, w, 6 + 4 * i)
        layer = np.array(colour, dtype=np.float32) * texture[..., None]
        img = img * (1 - mask[..., None]) + layer * mask[..., None]
    img = img + rng.normal(0, 0.015, img.shape).astype(np.float32)
    out = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")
    return out.filter(ImageFilter.GaussianBlur(0.6))


def logo(size: int = 400) -> Image.Image:
    """A transparent logo: concentric translucent rings and a soft shadow (RGBA)."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    shadow = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(shadow).ellipse((60, 70, size - 40, size - 30), fill=(0, 0, 0, 110))
    img.alpha_composite(shadow.filter(ImageFilter.GaussianBlur(12)))
    draw = ImageDraw.Draw(img)
    colours = [(230, 57, 70, 255), (241, 143, 1, 220), (42, 157, 143, 200), (38, 70, 83, 255)]
    for i, colour in enumerate(colours):
        pad = 50 + i * 38
        draw.ellipse((pad, pad, size - pad, size - pad), fill=colour)
    draw.text((size // 2, size // 2), "IP", fill=(255, 255, 255, 255), anchor="mm",
              font=ImageFont.load_default(size=64))
    return img


def screenshot(w: int = 800, h: int = 500) -> Image.Image:
    """A flat UI screenshot: sharp edges and text, where lossy codecs show their artefacts."""
    img = Image.new("RGB", (w, h), (248, 249, 251))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, w, 48), fill=(33, 37, 41))
    title_font = ImageFont.load_default(size=20)
    draw.text((16, 14), "ImagePipe - sample report", fill=(255, 255, 255), font=title_font)
    draw.rectangle((0, 48, 170, h), fill=(233, 236, 239))
    font = ImageFont.load_default(size=15)
    for i, label in enumerate(["Overview", "Images", "Jobs", "Settings"]):
        draw.text((18, 70 + i * 32), label, fill=(52, 58, 64), font=font)
    bars = [120, 260, 190, 310, 230, 280]
    for i, bar in enumerate(bars):
        x0 = 210 + i * 70
        draw.rectangle((x0, 440 - bar, x0 + 44, 440), fill=(13, 110, 253) if i % 2 else (25, 135, 84))
    draw.line((200, 440, 640, 440), fill=(73, 80, 87), width=2)
    small = ImageFont.load_default(size=13)
    note = ["Thin lines, small", "text and flat colour", "are hard for JPEG", "at low quality."]
    for i, line in enumerate(note):
        draw.text((660, 90 + i * 22), line, fill=(33, 37, 41) if i < 2 else (108, 117, 125), font=small)
    return img


def animation(size: int = 160, frames: int = 8) -> list[Image.Image]:
    """A tiny animated GIF: a dot moving around a circle."""
    out = []
    for f in range(frames):
        img = Image.new("P", (size, size), 0)
        img.putpalette([255, 255, 255, 230, 57, 70, 38, 70, 83] + [0] * (256 * 3 - 9))
        draw = ImageDraw.Draw(img)
        draw.ellipse((20, 20, size - 20, size - 20), outline=2, width=4)
        angle = 2 * np.pi * f / frames
        cx, cy = size / 2 + 60 * np.cos(angle), size / 2 + 60 * np.sin(angle)
        draw.ellipse((cx - 12, cy - 12, cx + 12, cy + 12), fill=1)
        out.append(img)
    return out


def main() -> None:
    """Write every sample next to this script and print its size."""
    landscape().save(HERE / "landscape.jpg", quality=88, optimize=True)
    logo().save(HERE / "logo.png", optimize=True)
    screenshot().save(HERE / "screenshot.png", optimize=True)
    first, *rest = animation()
    first.save(HERE / "orbit.gif", save_all=True, append_images=rest, duration=80, loop=0)
    for path in sorted(HERE.iterdir()):
        if path.suffix in {".jpg", ".png", ".gif"}:
            print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
