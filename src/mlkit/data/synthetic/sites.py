"""Visual styles of the construction sites the generator can draw.

Two sites differ in what a detector has to learn, not only in colour: site B has
blue and green helmets and wears caps in the colours that are helmets on site A,
so a model trained on A alone confuses them (the incremental-learning demo needs
that domain shift). Site C, a sunlit desert yard with a warm camera, is the new
site of `mlkit demo`: neither committed model saw it, so the demo fine-tunes them.
"""

from __future__ import annotations

import dataclasses

RGB = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class SiteStyle:
    name: str
    sky_top: RGB
    sky_bottom: RGB
    ground: RGB
    ground_texture: float  # amplitude of the low-frequency ground noise
    building_colors: tuple[RGB, ...]
    helmet_colors: tuple[RGB, ...]
    cap_colors: tuple[RGB, ...]  # caps are confusers: heads under them are helmet-off
    vest_colors: tuple[RGB, ...]
    trouser_colors: tuple[RGB, ...]
    brightness: tuple[float, float]  # global gain range
    tint: RGB  # multiplicative colour cast, 255 = neutral
    noise_sigma: tuple[float, float]


SITES: dict[str, SiteStyle] = {
    "A": SiteStyle(
        name="A",
        sky_top=(120, 170, 225),
        sky_bottom=(200, 220, 240),
        ground=(186, 160, 120),
        ground_texture=22.0,
        building_colors=((150, 70, 55), (160, 160, 155), (190, 180, 160)),
        helmet_colors=((250, 215, 20), (245, 245, 240), (250, 130, 20), (220, 35, 30)),
        cap_colors=((30, 60, 160), (40, 40, 45), (30, 120, 60)),
        vest_colors=((250, 120, 20), (200, 240, 40)),
        trouser_colors=((40, 50, 90), (70, 70, 75), (110, 85, 60)),
        brightness=(0.85, 1.15),
        tint=(255, 250, 240),
        noise_sigma=(0.0, 6.0),
    ),
    "B": SiteStyle(
        name="B",
        sky_top=(70, 75, 90),
        sky_bottom=(140, 140, 150),
        ground=(105, 108, 112),
        ground_texture=14.0,
        building_colors=((70, 90, 120), (120, 125, 130), (60, 60, 70)),
        helmet_colors=((30, 80, 200), (40, 160, 70), (235, 235, 235)),
        cap_colors=((250, 215, 20), (250, 130, 20), (220, 35, 30)),
        vest_colors=((200, 240, 40), (240, 240, 60)),
        trouser_colors=((30, 30, 35), (60, 65, 80)),
        brightness=(0.55, 0.9),
        tint=(225, 235, 255),
        noise_sigma=(3.0, 10.0),
    ),
    "C": SiteStyle(
        name="C",
        sky_top=(205, 150, 95),
        sky_bottom=(245, 205, 150),
        ground=(200, 120, 70),
        ground_texture=28.0,
        building_colors=((215, 190, 140), (120, 95, 80), (235, 225, 200)),
        helmet_colors=((245, 245, 240), (250, 215, 20), (240, 90, 160)),
        cap_colors=((110, 60, 30), (30, 120, 60), (40, 40, 45)),
        vest_colors=((250, 120, 20), (120, 200, 250)),
        trouser_colors=((170, 150, 110), (50, 55, 70)),
        brightness=(0.95, 1.3),
        tint=(255, 235, 210),
        noise_sigma=(1.0, 7.0),
    ),
}


def get_site(name: str) -> SiteStyle:
    from mlkit.errors import MlkitError

    try:
        return SITES[name]
    except KeyError:
        raise MlkitError(f"unknown site {name!r}; choose one of {sorted(SITES)}") from None
