"""The demo pipeline: settings follow the data's size, skipped steps say why, a failed
step stops the chain and its message reaches the status file the app reads."""

from __future__ import annotations

import os

from core.cli import pipeline
from core.config import Paths


def _argv(steps, name):
    return next(s.argv for s in steps if s.name == name)


def _value(argv, flag):
    return argv[argv.index(flag) + 1]


def test_settings_follow_the_data_size(tmp_path):
    paths = Paths(tmp_path)
    small = pipeline.plan(paths, {"customers": 200, "reviewers": 105, "reviews": 180})
    assert _value(_argv(small, "train"), "--max-customers") == "200"
    assert _value(_argv(small, "train"), "--eval-users") == "20"
    assert _value(_argv(small, "train"), "--audit-pool") == "auto"
    assert _value(_argv(small, "sentiment-train"), "--max-reviewers") == "105"
    big = pipeline.plan(paths, {"customers": 100_000, "reviewers": 30_000, "reviews": 40_000})
    assert _value(_argv(big, "train"), "--max-customers") == str(pipeline.MAX_TRAIN_CUSTOMERS)
    assert _value(_argv(big, "train"), "--eval-users") == str(pipeline.MAX_EVAL_USERS)
    assert _value(_argv(big, "sentiment-train"), "--max-reviewers") == str(
        pipeline.MAX_REVIEWERS)
    assert all(s.state == "pending" for s in small + big)


def test_too_little_data_is_skipped_with_the_reason(tmp_path):
    steps = pipeline.plan(Paths(tmp_path), {"customers": 5, "reviewers": 3, "reviews": 3})
    assert {s.state for s in steps} == {"skipped"}
    assert "5 customers with events" in steps[0].message
    assert "3 reviewers" in steps[-1].message


def test_a_failed_step_stops_the_chain_and_is_recorded(tmp_path):
    paths = Paths(tmp_path)
    steps = pipeline.plan(paths, {"customers": 500, "reviewers": 100, "reviews": 100})
    ran = []

    def execute(argv):
        ran.append(argv[0])
        return "no trained model" if argv[0] == "score" else None

    pipeline.PRECONDITIONS["audit"] = lambda _: None  # no registry in this test
    try:
        status = pipeline.run(steps, paths, execute, echo=lambda _: None)
    finally:
        pipeline.PRECONDITIONS["audit"] = pipeline._audit_skip_reason
    assert ran == ["train", "audit", "score"]
    assert status.state == "failed" and status.failed.name == "score"
    stored = pipeline.read_status(paths)
    assert stored.state == "failed"
    assert [s.state for s in stored.steps] == ["done", "done", "failed", "pending", "pending",
                                               "pending"]
    assert stored.failed.message == "no trained model"


def test_a_crash_is_a_failed_step_with_its_message(tmp_path):
    paths = Paths(tmp_path)
    steps = [pipeline.Step("score", "Score", ["score"])]

    def execute(argv):
        raise RuntimeError("disk full")

    status = pipeline.run(steps, paths, execute, echo=lambda _: None)
    assert status.failed.message == "RuntimeError: disk full"


def test_the_audit_is_skipped_without_a_pool(tmp_path):
    reason = pipeline._audit_skip_reason(Paths(tmp_path))
    assert reason == "no trained recommender to audit."


def test_a_status_whose_process_is_gone_is_not_alive(tmp_path):
    status = pipeline.Status(state="running", steps=[], pid=2**22 + 12345)
    assert not status.alive()
    assert pipeline.Status(state="running", steps=[], pid=os.getpid()).alive()
