"""local.demo's telling: values in words, and an answer the story did not expect is counted (the demo
then exits 1)."""

from __future__ import annotations

import pytest

from local.demo import Story, words


def test_values_are_told_in_words_not_reprs() -> None:
    assert words(None) == "none"
    assert (words(False), words(True)) == ("no", "yes")
    assert words({"queued": 0, "released": None, "done": 3, "calls": {}}) == "queued 0, done 3"
    assert words([]) == "none" and words(["a", None]) == "a, none"


def test_an_expected_refusal_is_marked_expected_with_its_reason(capsys: pytest.CaptureFixture[str]) -> None:
    story = Story("t")
    assert story.expect("stop a completed task", 409, {"message": "x"}, expect=409, refusal="it is completed")
    assert capsys.readouterr().out.strip() == "- stop a completed task -> 409, as expected: it is completed"
    assert (story.steps, story.refusals, story.unexpected) == (1, 1, [])


def test_an_unexpected_answer_is_flagged_and_kept(capsys: pytest.CaptureFixture[str]) -> None:
    story = Story("t")
    assert not story.expect("start the task", 409, {"message": "cannot start a completed task"})
    assert "! UNEXPECTED: start the task -> 409 cannot start a completed task" in capsys.readouterr().out
    assert story.unexpected == ["start the task -> 409"]
    assert not story.expect("read the task", 200, {}, expect=409, refusal="gone")
    assert len(story.unexpected) == 2 and story.refusals == 0
