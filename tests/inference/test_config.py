"""The config base: strict from_dict (unknown keys and wrong types named), nesting, round trips,
and every hyperparameter group built on it."""
import dataclasses
import json

import pytest

from inference.config import Config, ConfigError
from inference.detector_training import TrainConfig
from inference.embedder import EmbedderConfig
from inference.embedder_training import TrainingConfig
from inference.label_noise import NoiseConfig
from inference.learning import LearningConfig
from inference.model_set import Stages
from inference.pipeline import PipelineConfig
from inference.realgram import RealgramConfig
from inference.tracking import TrackingConfig

GROUPS = [RealgramConfig, TrackingConfig, EmbedderConfig, TrainingConfig, TrainConfig, LearningConfig, NoiseConfig,
          PipelineConfig, Stages]


@dataclasses.dataclass(frozen=True)
class Inner(Config):
    size: int = 3
    scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Outer(Config):
    name: str = "a"
    limit: int | None = None
    weights: tuple[float, float] = (0.5, 0.5)
    on: bool = True
    inner: Inner = dataclasses.field(default_factory=Inner)
    optional_inner: Inner | None = None


@pytest.mark.parametrize("kind", GROUPS, ids=lambda kind: kind.__name__)
def test_every_group_is_a_config_that_refuses_unknown_keys_by_name(kind):
    assert issubclass(kind, Config)
    assert kind.__dataclass_params__.frozen
    with pytest.raises(ConfigError, match=rf"{kind.__name__} has no field 'no_such_field'"):
        kind.from_dict({"no_such_field": 1})


@pytest.mark.parametrize("kind", GROUPS, ids=lambda kind: kind.__name__)
def test_every_group_round_trips_through_json(kind):
    default = kind()
    assert kind.from_dict(json.loads(json.dumps(default.to_dict()))) == default


@pytest.mark.parametrize("kind", [RealgramConfig, TrackingConfig, EmbedderConfig, TrainingConfig, PipelineConfig])
def test_no_group_keeps_its_own_from_dict(kind):
    """One loader: the groups inherit from_dict instead of copying it."""
    assert "from_dict" not in vars(kind)


def test_a_typo_is_refused_not_silently_defaulted():
    with pytest.raises(ConfigError, match="RealgramConfig has no field 'wieght'"):
        RealgramConfig.from_dict({"wieght": 0.3})
    assert RealgramConfig.from_dict({"weight": 0.3}).weight == 0.3


def test_a_wrong_type_names_the_field_and_the_type_expected():
    with pytest.raises(ConfigError, match=r"TrackingConfig.min_iou: expected float, got str '0.3'"):
        TrackingConfig.from_dict({"min_iou": "0.3"})
    with pytest.raises(ConfigError, match=r"Outer.limit: expected int, got float 2.5"):
        Outer.from_dict({"limit": 2.5})
    with pytest.raises(ConfigError, match=r"Outer.on: expected bool, got int 1"):
        Outer.from_dict({"on": 1})
    with pytest.raises(ConfigError, match=r"Outer.weights: expected 2 values, got 3"):
        Outer.from_dict({"weights": [1, 2, 3]})
    with pytest.raises(ConfigError, match=r"Outer.weights\[1\]: expected float, got str 'x'"):
        Outer.from_dict({"weights": [1, "x"]})
    with pytest.raises(ConfigError, match="expected a dict of fields, got list"):
        Outer.from_dict([1, 2])


def test_json_numbers_convert_where_nothing_is_lost():
    config = Outer.from_dict({"limit": 4.0, "weights": [1, 2]})
    assert config.limit == 4 and isinstance(config.limit, int)
    assert config.weights == (1.0, 2.0) and all(isinstance(w, float) for w in config.weights)
    assert RealgramConfig.from_dict({"window_days": 30}).window_days == 30.0
    assert Outer.from_dict({"limit": None}).limit is None
    assert Outer.from_dict(None) == Outer()


def test_nested_configs_read_from_dicts_and_refuse_their_own_unknown_keys():
    config = Outer.from_dict({"inner": {"size": 7}, "optional_inner": {"scale": 2}})
    assert config.inner == Inner(size=7) and config.optional_inner == Inner(scale=2.0)
    with pytest.raises(ConfigError, match="Inner has no field 'sise'"):
        Outer.from_dict({"inner": {"sise": 7}})
    with pytest.raises(ConfigError, match=r"Inner.size: expected int, got str"):
        Outer.from_dict({"inner": {"size": "7"}})
    assert Outer.from_dict({"inner": Inner(size=9)}).inner.size == 9


def test_replace_is_checked_like_from_dict():
    assert Outer().replace(name="b").name == "b"
    with pytest.raises(ConfigError, match="Outer has no field 'nmae'"):
        Outer().replace(nmae="b")


def test_training_composes_the_embedder_config_instead_of_repeating_it():
    names = {field.name for field in dataclasses.fields(TrainingConfig)}
    assert not names & {field.name for field in dataclasses.fields(EmbedderConfig)}
    config = TrainingConfig.from_dict({"embedder": {"backbone": "test_efficientnet", "input_size": 64}, "epochs": 2})
    assert config.embedder == EmbedderConfig(backbone="test_efficientnet", embedding_dim=512, input_size=64)
    assert TrainingConfig().embedder.embedding_dim == 512
    with pytest.raises(ConfigError, match="TrainingConfig has no field 'backbone'"):
        TrainingConfig.from_dict({"backbone": "x"})


def test_pipeline_config_reads_its_stages_nested():
    config = PipelineConfig.from_dict({"version": "v2", "realgram": {"weight": 0.2}, "tracking": {}})
    assert config.realgram == RealgramConfig(weight=0.2) and config.tracking == TrackingConfig()
    assert PipelineConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="TrackingConfig has no field 'min_ious'"):
        PipelineConfig.from_dict({"tracking": {"min_ious": 0.2}})


def test_stages_refuse_unknown_stage_and_non_bool():
    assert Stages.from_dict({"reranker": True}).version == "v3"
    with pytest.raises(ConfigError, match="Stages has no field 'rerank'"):
        Stages.from_dict({"rerank": True})
    with pytest.raises(ConfigError, match="Stages.tracking: expected bool"):
        Stages.from_dict({"tracking": "yes"})
