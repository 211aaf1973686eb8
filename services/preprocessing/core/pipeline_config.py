"""The config dataclasses of the ``basic`` and ``advanced`` pipelines, section by section.

The reference study (SkinGenBench, arXiv 2512.17585) publishes no preprocessing parameters; the
defaults here are its description with parameters chosen by this project (each field's ``doc``
says why). Steps the study does not mention -- dark-field handling, ink removal, colour
constancy -- are switches, off by default. The defaults are the ``paper`` profile
(``skingenbench.services.preprocessing.core.pipeline_registry`` holds the profiles).
"""

from __future__ import annotations

from dataclasses import dataclass

from skingenbench.services.core.config import ConfigBase, invalid_field, section, setting
from skingenbench.services.preprocessing.core.geometry import FIT_MODES
from skingenbench.services.preprocessing.core.hair_removal import INPAINT_METHODS
from skingenbench.services.preprocessing.core.vignette import VIGNETTE_MODES


@dataclass(frozen=True)
class AugmentationConfig(ConfigBase):
    hflip_probability: float = setting(0.5, "probability of a horizontal flip", 0.0, 1.0)
    vflip_probability: float = setting(0.5, "probability of a vertical flip", 0.0, 1.0)
    rotate90: bool = setting(True, "random multiple of 90 deg: dermoscopy has no canonical orientation")
    max_rotation_degrees: float = setting(
        15.0, "uniform small rotation in +-this, reflected border", 0.0, 45.0
    )


@dataclass(frozen=True)
class MeasurementConfig(ConfigBase):
    segment_lesion: bool = setting(True, "lesion mask and lesion_area_fraction")
    skin_tone: bool = setting(True, "ITA of the non-lesion skin and its skin-type category")
    detect_hair: bool = setting(True, "hair mask and hair_fraction when hair is not removed")
    detect_dark_field: bool = setting(True, "exclude the dermoscope's dark field from the measurements")


@dataclass(frozen=True)
class BasicConfig(ConfigBase):
    size: int = setting(256, "output side in pixels (the study: 256x256)", 8, 4096)
    fit: str = setting(
        "center_crop", "how the aspect ratio is kept: crop the long side or pad", choices=FIT_MODES
    )
    working_max_side: int = setting(
        1024,
        "cleaning and measuring run at most at this long side (HAM10000's 600x450 runs native)",
        32,
        16384,
    )
    clean_at_output_scale: bool = setting(
        True,
        "clean and measure at the output's scale and, for a centre crop, on the output's square only"
        " (600x450 -> 450x450 -> 256x256): what the output keeps",
    )
    augmentation: AugmentationConfig = section(AugmentationConfig, "geometric augmentation (GTA sets)")
    measurements: MeasurementConfig = section(MeasurementConfig, "per-image measurements")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.working_max_side < self.size:
            raise invalid_field(
                "working_max_side", f"{self.working_max_side} is smaller than size={self.size}"
            )


@dataclass(frozen=True)
class VignetteConfig(ConfigBase):
    enabled: bool = setting(False, "not in the study; crop away or fill the dark field")
    mode: str = setting(
        "crop", "crop to the largest clean rectangle, or fill with skin colour", choices=VIGNETTE_MODES
    )
    relative_threshold: float = setting(0.35, "dark = below this x the 95th-percentile luminance", 0.05, 0.9)
    min_crop_fraction: float = setting(0.3, "fill instead when a crop would keep less than this", 0.0, 1.0)


@dataclass(frozen=True)
class HairRemovalConfig(ConfigBase):
    enabled: bool = setting(True, "DullRazor hair removal (Lee et al. 1997), as in the study")
    kernel_fraction: float = setting(
        0.04, "line length / short side; > 3x the widest hair (~18 px at 450)", 0.005, 0.2
    )
    orientations: int = setting(4, "line directions whose closings are combined", 1, 16)
    threshold: float = setting(12.0, "black-hat level (8-bit luminance) that counts as hair", 1.0, 255.0)
    min_length_fraction: float = setting(
        0.05, "components shorter than this / short side are not hair", 0.0, 0.5
    )
    dilation_fraction: float = setting(
        0.0,
        "mask grown by this / short side before inpainting. 0: at the output's scale one pixel is a third"
        " of a hair, and on 120 imported phantoms growing by it gave +0.37 dB PSNR inside hair but -1.18 dB"
        " outside (most grown pixels were skin) and cost a quarter more inpainting; 0.004 grows by 1 px",
        0.0,
        0.05,
    )
    inpaint_method: str = setting(
        "telea", "Telea 2004 or Navier-Stokes (Bertalmio et al. 2001)", choices=INPAINT_METHODS
    )
    inpaint_radius_fraction: float = setting(0.005, "inpainting neighbourhood / short side", 0.001, 0.05)


@dataclass(frozen=True)
class MarkRemovalConfig(ConfigBase):
    enabled: bool = setting(True, "the study's ruler-mark removal")
    remove_ruler: bool = setting(True, "thin dark straight marks near the border")
    remove_ink: bool = setting(False, "not in the study; saturated blue/purple pen marks")
    ink_min_saturation: float = setting(
        0.3, "keep high: blue-white veil and blue nevi are greyish blue", 0.05, 1.0
    )
    ruler_threshold: float = setting(15.0, "black-hat level that counts as a mark", 1.0, 255.0)
    ruler_band_fraction: float = setting(0.2, "marks are searched this far from the border", 0.01, 0.5)


@dataclass(frozen=True)
class ColorConstancyConfig(ConfigBase):
    enabled: bool = setting(False, "not in the study; Shades of Gray (Finlayson & Trezzi 2004)")
    power: float = setting(6.0, "Minkowski norm p: 1 = Gray World, large = max-RGB", 1.0, 64.0)


@dataclass(frozen=True)
class AdvancedConfig(BasicConfig):
    vignette: VignetteConfig = section(VignetteConfig, "dark corners / black frame")
    hair_removal: HairRemovalConfig = section(HairRemovalConfig, "DullRazor hair removal")
    mark_removal: MarkRemovalConfig = section(MarkRemovalConfig, "ruler and ink marks")
    color_constancy: ColorConstancyConfig = section(ColorConstancyConfig, "illuminant normalisation")
