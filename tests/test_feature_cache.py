"""Frozen-prefix feature cache: same training as without it, rebuilt when the prefix changes."""

from conftest import assert_state_close, tiny_config  # the `data` fixture: conftest too
from techniques import build_technique
from vinocr.engine.checkpoint import load_checkpoint
from vinocr.engine.feature_cache import frozen_stage
from vinocr.engine.trainer import Trainer
from vinocr.models import build_model


def ppocr_config(data, run, cache: bool, epochs: int = 3):
    return tiny_config(data, run, epochs=epochs,
                       Architecture__name="ppocrv4_mobile",
                       Architecture__params={"neck_depth": 1},
                       Train__feature_cache={"enabled": cache, "views": 2})


def final_weights(run):
    return load_checkpoint(run / "latest").model_state


def test_cached_training_equals_uncached(data, tmp_path):
    reports = {}
    for cache in (False, True):
        run = tmp_path / f"cache_{cache}"
        trainer = Trainer(ppocr_config(data, run, cache),
                          hooks=build_technique({"name": "frozen_backbone"}))
        reports[cache] = trainer.fit()
    assert reports[True]["timing"]["feature_cache_build_seconds"] > 0
    assert reports[False]["timing"]["feature_cache_build_seconds"] is None
    a, b = final_weights(tmp_path / "cache_False"), final_weights(tmp_path / "cache_True")
    moved = [k for k in a if k.startswith("head.") and "ctc_head" in k]
    assert moved
    assert_state_close(b, a, rtol=1e-4)


def test_cache_follows_gradual_unfreezing(data, tmp_path):
    # Both cached phases: epoch 0 trains the head on cached neck outputs, epoch 1 unfreezes the
    # neck and trains it on cached backbone outputs. (Once everything trains, Adam amplifies
    # 1e-7 float differences in near-zero gradients, so runs are compared while a cache applies.)
    schedule = {"name": "gradual_unfreeze",
                "schedule": {0: ["head", "aux_head"], 1: ["neck"], 9: ["all"]}}
    runs = {}
    for cache in (False, True):
        run = tmp_path / f"g_{cache}"
        trainer = Trainer(ppocr_config(data, run, cache, epochs=2),
                          hooks=build_technique(schedule))
        stages = []
        original = trainer._freeze_prefix_mode

        def spy():
            stage = original()
            stages.append(stage)
            return stage

        trainer._freeze_prefix_mode = spy
        trainer.fit()
        runs[cache] = (trainer, stages)
    # epoch 0: backbone + neck frozen; epoch 1: backbone frozen
    assert runs[True][1] == ["neck", "backbone"]
    cache = runs[True][0].feature_cache
    assert cache.key[0] == "backbone"  # rebuilt when the neck unfroze
    a, b = final_weights(tmp_path / "g_False"), final_weights(tmp_path / "g_True")
    assert_state_close(b, a, rtol=1e-4)


def test_frozen_stage_detection():
    model = build_model("ppocrv4_mobile", 10)
    assert frozen_stage(model) is None
    for p in model.backbone.parameters():
        p.stop_gradient = True
    assert frozen_stage(model) == "backbone"
    for p in model.head.ctc_encoder.parameters():
        p.stop_gradient = True
    assert frozen_stage(model) == "neck"
