"""Resumable stages: unchanged stages are reused, a changed setting reruns exactly its downstream."""

from genstruct_train.stages import StageRunner, stage_key


def _pipeline(root, a, b):
    runner = StageRunner(root)
    ran = []

    def stage(name, value):
        def fn(d):
            ran.append(name)
            (d / "out.txt").write_text(str(value))
            return {"value": value}
        return fn

    k1 = stage_key({"a": a})
    runner.run("first", k1, stage("first", a))
    k2 = stage_key({"b": b}, upstream=[k1])
    runner.run("second", k2, stage("second", b))
    k3 = stage_key({}, upstream=[k1])  # reads only the first stage
    runner.run("third", k3, stage("third", 0))
    return ran, runner.events


def test_rerun_skips_everything_when_nothing_changed(tmp_path):
    assert _pipeline(tmp_path, 1, 2)[0] == ["first", "second", "third"]
    ran, events = _pipeline(tmp_path, 1, 2)
    assert ran == []
    assert [e["ran"] for e in events] == [False, False, False]


def test_changed_setting_reruns_exactly_its_downstream(tmp_path):
    _pipeline(tmp_path, 1, 2)
    assert _pipeline(tmp_path, 1, 3)[0] == ["second"]
    assert _pipeline(tmp_path, 5, 3)[0] == ["first", "second", "third"]
    assert (tmp_path / "first" / "out.txt").read_text() == "5"


def test_killed_stage_is_rerun(tmp_path):
    _pipeline(tmp_path, 1, 2)
    (tmp_path / "second" / "stage.json").unlink()  # as if killed before its marker was written
    assert _pipeline(tmp_path, 1, 2)[0] == ["second"]


def test_file_content_is_part_of_the_key(tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("x")
    k = stage_key({}, files=[f])
    f.write_text("y")
    assert stage_key({}, files=[f]) != k
