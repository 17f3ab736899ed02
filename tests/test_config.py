import dataclasses

import pytest

from ssp.config import ConfigError, describe, load_config
from ssp.tree import SSPConfig
from tests.conftest import REPO


@pytest.mark.parametrize("name", ["tiny-cpu.yaml", "qwen2.5-math-1.5b-gpu.yaml"])
def test_shipped_configs_load(name):
    conf = load_config(SSPConfig, REPO / "configs" / name)
    assert conf.engine.max_model_len >= 256


def test_gpu_config_keeps_paper_length():
    conf = load_config(SSPConfig, REPO / "configs" / "qwen2.5-math-1.5b-gpu.yaml")
    assert conf.sampling.max_tokens == 16384 and conf.engine.dtype == "bfloat16"


def test_overrides_apply_with_types():
    conf = load_config(SSPConfig, REPO / "configs" / "tiny-cpu.yaml",
                       ["sampling.temperature=0.5", "model.tiny.num_layers=2", "data.toy.levels=[1,3]"])
    assert conf.sampling.temperature == 0.5
    assert conf.model.tiny.num_layers == 2
    assert conf.data.toy.levels == [1, 3]
    assert isinstance(conf.sampling.temperature, float)


def test_int_and_exponent_strings_are_accepted_for_float():
    assert load_config(SSPConfig, None, ["sampling.temperature=1"]).sampling.temperature == 1.0
    assert load_config(SSPConfig, None, ["learner.lr=1e-3"]).learner.lr == 1e-3
    with pytest.raises(ConfigError, match=r"learner\.lr.*expected float"):
        load_config(SSPConfig, None, ["learner.lr=fast"])


def test_unknown_key_names_full_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  tiny:\n    hiden_size: 64\n")
    with pytest.raises(ConfigError, match=r"model\.tiny\.hiden_size") as e:
        load_config(SSPConfig, bad)
    assert str(bad) in str(e.value)


def test_wrong_type_names_full_key():
    with pytest.raises(ConfigError, match=r"model\.tiny\.num_layers.*expected int"):
        load_config(SSPConfig, None, ["model.tiny.num_layers=two"])
    with pytest.raises(ConfigError, match=r"engine\.enforce_eager.*expected bool"):
        load_config(SSPConfig, None, ["engine.enforce_eager=3"])
    with pytest.raises(ConfigError, match=r"data\.toy\.levels\[1\]"):
        load_config(SSPConfig, None, ["data.toy.levels=[1, x]"])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(SSPConfig, None, ["sampling.temperature"])


def test_every_leaf_has_help():
    rows = describe(SSPConfig)
    assert len(rows) > 20
    missing = [k for k, _, h in rows if not h]
    assert missing == []


def test_defaults_are_not_shared_between_instances():
    a, b = SSPConfig(), SSPConfig()
    a.data.toy.levels.append(9)
    assert b.data.toy.levels == [1, 2] and dataclasses.is_dataclass(b.model)


def test_ranges_choices_and_cross_field_checks_at_load():
    ok = load_config(SSPConfig, None, ["rl.group_size=2", "learner.lr=0.5", "verifier.memory_mb=64"])
    assert (ok.rl.group_size, ok.learner.lr, ok.verifier.memory_mb) == (2, 0.5, 64)
    for override, message in (("rl.group_size=1", r"'rl\.group_size': must be >= 2, got 1"),
                              ("learner.lr=inf", r"'learner\.lr': must be a finite number"),
                              ("learner.loss.clip_low=1.0", r"'learner\.loss\.clip_low': must be >= 0 and < 1"),
                              ("sampling.top_p=0", r"'sampling\.top_p': must be > 0 and <= 1, got 0"),
                              ("rl.mode=offline", r"'rl\.mode': must be one of \['sync', 'one-step-off', 'async'\]"),
                              ("sampling.max_tokens=999", r"'sampling\.max_tokens': 999 must be below"),
                              ("learner.loss.overlong=linear", r"'learner\.loss\.overlong': must be one of \['off', 'dapo'\]")):
        with pytest.raises(ConfigError, match=message):
            load_config(SSPConfig, None, [override])
    with pytest.raises(ConfigError, match=r"'learner\.loss\.overlong_buffer': 64 must be below rl\.phases\[0\]"):
        load_config(SSPConfig, None, ["learner.loss.overlong=dapo", "learner.loss.overlong_buffer=64"])
    assert load_config(SSPConfig, None, ["learner.loss.overlong=dapo"]).learner.loss.overlong_buffer == 16


def test_yaml_aliases_are_refused(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [1, 2]\nb: [*a, *a]\n")
    with pytest.raises(ConfigError, match=r"bomb\.yaml: line 2: YAML aliases"):
        load_config(SSPConfig, bomb)
