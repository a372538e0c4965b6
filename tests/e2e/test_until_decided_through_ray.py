"""`run --until-decided` through Ray and MLflow (svdablate/study/sequential.py): the parent run
carries the design and why it stopped, the report re-tests at the looks, resume adds nothing to
a stopped study."""

from __future__ import annotations

from mlflow import MlflowClient

from svdablate.report.claims import sequential as seq


def test_until_decided_through_ray_and_mlflow(tmp_path, cli, shared_ray):
    """The real thing, small: two rows, 2 then 4 seeds, 1 epoch. The parent run carries the
    design and why it stopped; the report re-tests at the looks and says so; resume of a
    stopped study adds nothing."""
    args = ("--results-dir", str(tmp_path), "--no-progress")
    run = cli(
        "run", "--preset", "demo", "--rows", "SVD,SVD+OW", "--seeds", "2", "--epochs", "1",
        "--until-decided", "--max-seeds", "4", *args,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (parent,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`svdablate.role` = 'parent'"
    )
    design = seq.UntilDecided.from_tag(parent.data.tags["svdablate.until_decided"])
    assert design.looks == [2, 4] and design.stopped and design.stopped != seq.TRIALS_LEFT
    assert design.trials == 2 * (2 + 2 * design.waves) and len(design.claims) == 2
    text = " ".join(run.stdout.split())
    assert f"{design.waves + 1} look(s), {design.waves} wave(s) added" in text
    assert f"stopped: {design.stopped}" in text and "seeds per row)" in text
    report = cli("report", *args[:2])
    assert report.returncode == 0 and "seeds until decided" in " ".join(report.stdout.split())
    again = cli("resume", parent.info.run_id, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        seq.UntilDecided.from_tag(
            client.get_run(parent.info.run_id).data.tags["svdablate.until_decided"]
        )
        == design
    )
