"""The competition schema: `competition.yaml` + `key.sub=value` overrides → `Config`.

YAML gives the values, override files and then `key=value` arguments win, an
unknown key is an error naming the closest valid key, and the resolved config
is saved in every run folder. Every key has a one-line comment in `schema.py`
(the learning paradigms' sections in `paradigms.py`, `tune:` in `tuning.py`); they are the
table of defaults.
"""

from pipelines.config.loading import load_config, parse_override, validate_config
from pipelines.config.schema import (
    CONFIG_FILE,
    AugmentConfig,
    CompetitionConfig,
    Config,
    CVConfig,
    DataConfig,
    GenerateConfig,
    ModelConfig,
    RunConfig,
    SubmissionConfig,
    TrainConfig,
    check_tunable_key,
)
from pipelines.config.tuning import ParamSpace, TuneConfig

__all__ = [
    "CONFIG_FILE",
    "AugmentConfig",
    "CVConfig",
    "CompetitionConfig",
    "Config",
    "DataConfig",
    "GenerateConfig",
    "ModelConfig",
    "ParamSpace",
    "RunConfig",
    "SubmissionConfig",
    "TrainConfig",
    "TuneConfig",
    "check_tunable_key",
    "load_config",
    "parse_override",
    "validate_config",
]
