"""The competition schema: overrides, unknown keys with hints, clear errors."""

import pytest
import yaml

from kapps.errors import ConfigError
from pipelines.config import load_config, parse_override

MINIMAL = "competition: {name: toy}\ndata: {pixel_shape: [8, 8, 1]}\n"


@pytest.fixture
def comp(tmp_path):
    (tmp_path / "competition.yaml").write_text(MINIMAL)
    return tmp_path


def test_defaults_and_competition_dir(comp):
    cfg = load_config(comp)
    assert cfg.train.epochs == 30
    assert cfg.competition.dir == str(comp.resolve())
    assert cfg.data_dir == comp.resolve() / "data"


def test_overrides_win_and_are_typed(comp):
    cfg = load_config(comp, ["train.lr=3e-3", "train.epochs=5", "model.args.style=paper"])
    assert cfg.train.lr == pytest.approx(0.003)
    assert cfg.train.epochs == 5
    assert cfg.model.args == {"style": "paper"}


def test_override_file_then_key_values(comp, tmp_path):
    best = tmp_path / "best.yaml"
    best.write_text("train: {lr: 0.01, epochs: 7}\n")
    cfg = load_config(comp, ["train.epochs=9"], [best])
    assert (cfg.train.lr, cfg.train.epochs) == (0.01, 9)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "unknown config key 'train.epoch'; did you mean 'train.epochs'"),
        ("trian.epochs=3", "unknown config key 'trian'; did you mean 'train'"),
        ("augment.rotaton=0.1", "did you mean 'augment.rotation'"),
        ("train.epochs=many", "train.epochs"),
        ("train.optimizer=adagrad", "train.optimizer"),
        ("data.val_fraction=1.5", "data.val_fraction"),
        ("train.epochs", "not of the form key.sub=value"),
    ],
)
def test_bad_overrides_name_the_key(comp, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(comp, [override])


def test_unknown_key_in_yaml(comp):
    (comp / "competition.yaml").write_text(MINIMAL + "train: {batchsize: 8}\n")
    with pytest.raises(ConfigError, match="did you mean 'train.batch_size'"):
        load_config(comp)


def test_not_yaml_and_missing_files(comp, tmp_path):
    (comp / "competition.yaml").write_text("competition: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(comp)
    with pytest.raises(ConfigError, match="no competition folder"):
        load_config(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="has no competition.yaml"):
        load_config(empty)


def test_pixel_csv_needs_a_pixel_shape(tmp_path):
    (tmp_path / "competition.yaml").write_text("competition: {name: toy}\n")
    with pytest.raises(ConfigError, match="pixel_shape"):
        load_config(tmp_path)


def test_run_name_is_stable_and_changes_with_the_config(comp):
    first, again = load_config(comp), load_config(comp)
    assert first.run_name() == again.run_name()
    assert load_config(comp, ["train.lr=0.1"]).run_name() != first.run_name()
    assert load_config(comp, ["run.name=mine"]).run_name() == "mine"


def test_resolved_config_round_trips(comp, tmp_path):
    cfg = load_config(comp, ["train.epochs=4"])
    saved = tmp_path / "run" / "config.yaml"
    saved.parent.mkdir()
    saved.write_text(cfg.to_yaml())
    assert yaml.safe_load(saved.read_text())["train"]["epochs"] == 4
    assert load_config(saved.parent) == cfg


def test_parse_override_values_as_yaml():
    assert parse_override("data.image_size=[28, 28]") == (["data", "image_size"], [28, 28])
    assert parse_override("train.ema=true") == (["train", "ema"], True)
    assert parse_override("run.name=a=b") == (["run", "name"], "a=b")


def test_a_segmentation_loss_is_refused_for_classification():
    from pipelines.tasks import get_task
    from tests.conftest import REPO

    cfg = load_config(REPO / "competitions" / "digits", ["train.loss=dice"])
    with pytest.raises(ConfigError, match="train.loss 'dice' is a segmentation loss"):
        get_task(cfg).compile_args()
