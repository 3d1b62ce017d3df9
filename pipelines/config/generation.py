"""The `generation:` section: what an image-generation run samples, scores and submits."""

from typing import Literal

from pydantic import Field, model_validator

from pipelines.config.base import Section


class GenerationConfig(Section):
    """Image generation: sampling, the sample-quality metrics and the images.zip submission."""

    conditional: bool = True  # condition on the class labels when the data has them and the
    # model can (ddpm, dcgan, wgan_gp)
    images: int = Field(10000, ge=1)  # images in the submission's images.zip
    min_images: int = Field(1, ge=1)  # the fewest images.zip may hold (Kaggle's Monet: 7,000)
    max_images: int = Field(10000, ge=1)  # the most it may hold (Monet: 10,000)
    image_size: tuple[int, int] | None = None  # (height, width) of submitted images; None:
    # data.image_size
    image_format: Literal["png", "jpg"] = "png"  # the submitted files' format
    sampler: Literal["ddim", "ddpm"] = "ddim"  # diffusion: the reverse process
    steps: int = Field(50, ge=1)  # ddim: timesteps visited
    guidance_scale: float = Field(1.0, ge=0)  # conditional diffusion: classifier-free guidance
    eval_images: int = Field(2000, ge=2)  # generated to score the best epoch (metrics.json)
    epoch_images: int = Field(500, ge=2)  # generated after an epoch to measure val_fid
    epoch_steps: int = Field(20, ge=1)  # ddim steps of those
    fid_every: int = Field(1, ge=1)  # epochs between val_fid measurements
    # which features FID, KID and MiFID use: domain (a classifier of the competition's own
    # real images), inception (InceptionV3's 2,048-d pool; needs inception_weights), auto
    # (inception when its weights file is there, else domain)
    features: Literal["auto", "domain", "inception"] = "auto"
    inception_weights: str | None = None  # keras.applications InceptionV3 notop .h5,
    # relative to the competition folder
    extractor_classes: str | None = None  # domain features of unlabelled data: a folder (in
    # data.dir) of class folders the classifier learns (gan-getting-started: monet vs photo)
    extractor_epochs: int = Field(15, ge=1)  # epochs that classifier trains

    @model_validator(mode="after")
    def _check_bounds(self):
        if not self.min_images <= self.images <= self.max_images:
            raise ValueError(
                f"generation.images {self.images} is outside "
                f"[min_images {self.min_images}, max_images {self.max_images}]"
            )
        return self
