"""The training loop end to end on the smoke config (tiny student, skimage images, CPU).

* the three-phase smoke run lowers the learning phases' objective on held-out images, prunes heads,
  writes TensorBoard events, checkpoints and a model bundle with a card;
* an interrupted-and-resumed run equals an uninterrupted one bit for bit (twice, one resume inside
  the pruning phase).
"""
import json
from pathlib import Path

import pytest
import torch

from _training_helpers import SMOKE, need_teacher, smoke_config, smoke_overrides, state_of


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Teacher targets shared by the module's runs (computed once, by the first run)."""
    return tmp_path_factory.mktemp("targets")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, cache):
    need_teacher()
    from muon_ad_training.cli import main

    out = tmp_path_factory.mktemp("smoke")
    argv = ["--config", str(SMOKE), "--output-dir", str(out)]
    # The CLI takes only the file; pass the cache dir through a small child config.
    child = out / "smoke_test.yaml"
    over = smoke_overrides(out, cache)
    child.write_text(json.dumps({"extends": str(SMOKE), **over}))  # JSON is YAML
    argv[1] = str(child)
    assert main(argv) == 0
    return out


def test_smoke_run_lowers_each_phase_objective_and_exports(smoke_run: Path):
    card = json.loads((smoke_run / "export" / "smoke.card.json").read_text())
    training = card["training"]
    assert training["steps"] == 80
    # on the held-out evaluation images: the learning phases lower their objective; compress (half of
    # the heads masked, fp16-rounded weights) may cost a little but not much
    for name in ("content", "distill"):
        ev = training["phase_evals"][name]
        assert ev["end"] < ev["start"], (name, ev)
    ev = training["phase_evals"]["compress"]
    assert ev["end"] < 1.1 * ev["start"], ev
    # Phase 3 masked half of the heads and the export (training/export.py) removed them structurally.
    assert card["pruning"]["heads_before"] == [2] and card["pruning"]["heads_after"] == [1]
    assert card["student_config"]["attn_heads"] == [1]
    assert card["styles"] == ["brick", "grass"] and card["metrics"]["tolerances_met"]
    assert training["config"]["phases"][2]["prune"]["target_sparsity"] == 0.5
    for role in ("weights", "onnx_fp32", "onnx_fp16", "onnx_int8"):
        assert (smoke_run / "export" / card["files"][role]["path"]).is_file()
    assert list((smoke_run / "tensorboard").glob("events.out.tfevents.*"))
    latest = (smoke_run / "checkpoints" / "latest").read_text().strip()
    assert latest == "step_00000080"
    ckpt = smoke_run / "checkpoints" / latest
    assert {p.name for p in ckpt.iterdir()} >= {"student.safetensors", "student.json", "trainer.json",
                                                "optimizer_rank0.pt", "state_rank0.pt"}
    assert not list((smoke_run / "checkpoints").glob(".*tmp"))


def test_exported_model_runs_and_stylizes(smoke_run: Path):
    from muon_ad_ros.core.checkpoint import load_student

    model = load_student(smoke_run / "export" / "smoke.safetensors")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y0, y1 = model(x, model.style_weights_for(0)), model(x, model.style_weights_for(1))
    assert y0.shape == x.shape and (y0 - y1).abs().mean() > 1e-4  # the two styles differ


def test_resume_equals_an_uninterrupted_run(tmp_path: Path, cache: Path):
    need_teacher()
    from muon_ad_training.trainer import Trainer

    steps = (4, 5, 7)  # resume inside distill (step 6) and inside compress (step 12, pruner active)
    straight = Trainer(smoke_config(tmp_path / "a", cache, steps))
    straight.run()
    cfg = smoke_config(tmp_path / "b", cache, steps)
    first = Trainer(cfg)
    assert first.run(max_steps=6)["steps"] == 6
    del first
    # A crash while writing the next checkpoint leaves a hidden partial folder: resume ignores it.
    partial = tmp_path / "b" / "checkpoints" / ".step_00000007.tmp"
    partial.mkdir()
    (partial / "optimizer_rank0.pt").write_bytes(b"truncated")
    second = Trainer(cfg)
    assert second.run(resume=True, max_steps=12)["steps"] == 12
    third = Trainer(cfg)
    summary = third.run(resume=True)
    assert summary["steps"] == 16 and third.history == straight.history
    a, b = state_of(straight.model), state_of(third.model)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert float(third.model.attention_modules()[0].head_mask.sum()) == 1.0  # pruning happened


def test_resume_without_checkpoint_is_an_error(tmp_path: Path, cache: Path):
    need_teacher()
    from muon_ad_ros.core.errors import ModelError
    from muon_ad_training.trainer import Trainer

    with pytest.raises(ModelError, match="no training checkpoint"):
        Trainer(smoke_config(tmp_path, cache, (1, 1, 1))).run(resume=True)


def test_cli_reports_config_errors(tmp_path: Path, capsys):
    from muon_ad_training.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {SMOKE}\noptim: {{muon_lr: 0.02, learning_rate: 1.0}}\n")
    assert main(["--config", str(bad)]) == 2
    assert "unknown key 'learning_rate'" in capsys.readouterr().err


def test_evaluation_batches_come_only_from_the_evaluation_images():
    from muon_ad_training.data import EVAL_STEP, BatchSource
    from muon_ad_training.train_config import DataConfig

    contents = [torch.full((3, 32, 32), float(i)) for i in range(7)]  # 5 training + 2 evaluation images
    source = BatchSource(contents, 2, DataConfig(batch_size=4), seed=0, num_eval=2)
    train = {i for step in range(200) for i in source.plan(step)[1]}
    evaluation = {i for k in range(50) for i in source.plan(EVAL_STEP + k)[1]}
    assert train == {0, 1, 2, 3, 4}
    assert evaluation == {5, 6}
    batch = source.batch(EVAL_STEP, 16)
    assert set(batch.clean.mean(dim=(1, 2, 3)).round().tolist()) <= {5.0, 6.0}


def test_config_refuses_evaluation_images_that_are_training_content(tmp_path):
    from muon_ad_ros.core.errors import ConfigError

    with pytest.raises(ConfigError, match="eval_skimage"):
        smoke_config(tmp_path, tmp_path, data={"eval_skimage": ["coffee"]})


def test_every_step_uses_the_scheduled_learning_rate_and_lambda(tmp_path, monkeypatch):
    """The per-step wiring of curriculum.lr_multiplier and lambda_at into the optimizer and loss."""
    need_teacher()
    from muon_ad_training.curriculum import lambda_at, lr_multiplier
    from muon_ad_training.trainer import Trainer

    phases = [
        {"name": "a", "steps": 6, "resolution": 32, "optimizer": "adamw", "warmup": 0.34, "cooldown": 0.34,
         "weights": {"recon": 1.0}, "lambda_content": {"start": 1.0, "end": 0.0, "schedule": "linear"}},
        {"name": "b", "steps": 5, "resolution": 32, "optimizer": "muon", "lr_scale": 0.5, "cooldown": 0.6,
         "weights": {"recon": 1.0}, "lambda_content": {"start": 0.2, "end": 0.8, "schedule": "cosine"}},
    ]
    cfg = smoke_config(tmp_path, tmp_path, targets={"enabled": False}, phases=phases)
    trainer = Trainer(cfg)
    seen = []

    def recording_loss(y, x, style, weights, lam, *args, **kwargs):
        if trainer.model.training:  # evaluate() runs the loss in eval mode at phase edges: not a step
            seen.append(lam)
        loss = (y - x).abs().mean()
        return loss, {"total": loss.detach()}

    monkeypatch.setattr(trainer, "loss_fn", recording_loss)
    lrs, expected_lrs, expected_lams = [], [], []
    for _ in range(11):
        phase, t = trainer.schedule.lookup(trainer.step)
        record = trainer.train_step()
        group = trainer.optimizer.param_groups[0]
        lrs.append(group["lr"])
        expected_lrs.append(group["initial_lr"] * lr_multiplier(phase.config, t))
        expected_lams.append(lambda_at(phase.config.lambda_content, t))
        assert record["lambda"] == pytest.approx(expected_lams[-1])
    assert lrs == pytest.approx(expected_lrs)
    assert len(set(round(v, 6) for v in lrs)) > 4  # warmup, plateau, cooldown, a second phase
    assert seen == pytest.approx(expected_lams)  # the loss of every step got that step's lambda
    assert expected_lams[0] == pytest.approx(1.0) and expected_lams[5] < 0.3 and len(set(seen)) > 5
