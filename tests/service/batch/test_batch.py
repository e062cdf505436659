"""Batch scoring, local engine, on the session's registry: the API's answers, every row accounted for,
atomic and idempotent publication, results independent of the batch size."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq
import pytest

from features.encoding import FeatureEncoder
from features.errors import FileFormatError
from features.model.riskmodel import RiskModel
from features.schema import OUTCOMES, PREDICTOR_NAMES
from features.tableio import StagedFile, read_table
from features.validate import validate_table
from service.batch import local
from service.batch.local import prepare_run, score_file
from service.batch.publish import (
    BatchPathError,
    ReconciliationError,
    RunSummary,
    claim_outputs,
    sha256_file,
)
from service.batch.read import BATCH_ROWS
from service.batch.score import Explain, Scored
from service.predictor import FIELDS, LoadedModel, Predictor
from tests.helpers import same_scores
from training import interval
from training.cohort.generate import generate_cohort
from training.estimators import BoostedSpec
from training.validation import patient_resamples

pytestmark = pytest.mark.slow  # every test uses the session's trained models (`trained`: ~10 s once)


@pytest.fixture(scope="module")
def csv_lines(tmp_path_factory) -> pd.DataFrame:
    """120 generated lines (outcomes included) and an extra column, as CSV cells (strings, "" if empty)."""
    frame = generate_cohort(120, seed=3)
    frame.insert(1, "site", [f" site-{i % 4} " for i in range(len(frame))])
    path = tmp_path_factory.mktemp("cohort") / "lines.csv"
    frame.to_csv(path, index=False)
    return read_table(path)


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV output as written: strings stay strings, floats parsed exactly (pyarrow)."""
    return pv.read_csv(path).to_pandas()


def run(predictor, source: Path, output: Path, *, batch_rows=BATCH_ROWS, **options) -> RunSummary:
    paths, table = prepare_run(source, output, batch_rows=batch_rows)
    return score_file(predictor, paths, table, **options)


def api_record(row: pd.Series) -> dict:
    """A validated contract row as the JSON record the API takes."""
    record = {}
    for name in PREDICTOR_NAMES:
        value = row[name]
        if isinstance(value, float) and math.isnan(value):
            record[name] = None
        elif name in ("ecog", "prior_lines", "dialysis") or name.startswith("cm_"):
            record[name] = int(value)
        else:
            record[name] = value.item() if hasattr(value, "item") else value
    return record


def test_a_row_scored_in_batch_equals_the_same_record_sent_to_the_api(predictor, api, csv_lines, tmp_path):
    source = tmp_path / "lines.csv"
    csv_lines.head(30).to_csv(source, index=False)
    out = {}
    for mode in Explain:
        run(predictor, source, tmp_path / f"{mode}.csv", explain=mode)
        out[mode] = read_csv(tmp_path / f"{mode}.csv")
    clean = validate_table(csv_lines.head(30)).clean
    for i in range(30):
        answer = api.post("/v1/predict", json=api_record(clean.iloc[i])).json()
        for o in OUTCOMES:
            expected = answer[o]
            contributions = {c["feature"]: c["contribution"] for c in expected["contributions"]}
            row_all, row_top = out[Explain.ALL].iloc[i], out[Explain.TOP3].iloc[i]
            assert row_all[f"risk_{o}"] == expected["probability"]  # the explained path: bit for bit
            assert row_all[f"shap_{o}_base"] == expected["base_value"]
            assert {f: row_all[f"shap_{o}_{f}"] for f in FIELDS} == contributions  # bit for bit
            assert row_top[f"risk_{o}"] == expected["probability"]
            for k, top in enumerate(expected["contributions"][:3], start=1):
                assert row_top[f"{o}_top{k}_feature"] == top["feature"]
                assert row_top[f"{o}_top{k}_contribution"] == top["contribution"]
            # --explain none: the predictor's bulk path, the same sums in another order
            assert abs(out[Explain.NONE].iloc[i][f"risk_{o}"] - expected["probability"]) < 1e-12
            assert out[Explain.NONE].iloc[i][f"model_version_{o}"] == int(expected["model"]["version"])


@pytest.fixture(scope="module")
def boosted(predictor, cohort) -> Predictor:
    """Boosted models for both outcomes, trained in-process on the session's cohort (the session's registry
    holds linear ones)."""
    frame = cohort
    encoder = FeatureEncoder().fit(frame)
    X = encoder.transform(frame)
    models = {}
    for outcome, column in OUTCOMES.items():
        y = frame[column].to_numpy()
        estimator, calibrator = BoostedSpec(num_boost_round=60).fit(X, y)
        model = RiskModel(outcome, encoder, estimator, calibrator)
        models[outcome] = LoadedModel(name=f"boosted-{outcome}", version="7", model=model, digest="0" * 64)
    return Predictor(models, predictor.bands)


def test_a_boosted_champion_scores_in_batch_as_predict_rows(boosted, csv_lines, tmp_path):
    csv_lines.to_csv(tmp_path / "lines.csv", index=False)
    for mode in (Explain.ALL, Explain.NONE):
        run(boosted, tmp_path / "lines.csv", tmp_path / f"{mode}.csv", explain=mode)
    explained, fast = read_csv(tmp_path / "all.csv"), read_csv(tmp_path / "none.csv")
    clean = validate_table(csv_lines).clean
    rows = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in clean.to_dict("records")]
    for i, prediction in enumerate(boosted.predict_rows(rows)):  # what /v1/predict answers
        for o, answer in prediction.outcomes.items():
            assert explained[f"risk_{o}"][i] == answer.probability
            assert explained[f"shap_{o}_base"][i] == answer.base_value
            contributions = {f"shap_{o}_{name}": c for name, _, c in answer.contributions}
            assert explained.loc[i, list(contributions)].to_dict() == contributions
            assert abs(fast[f"risk_{o}"][i] - answer.probability) < 1e-12  # tree sums, not SHAP sums


def test_output_carries_every_input_column_unchanged_then_the_scores(predictor, csv_lines, tmp_path):
    source = tmp_path / "lines.csv"
    raw = csv_lines.copy()
    raw.loc[4, "age"] = " 71.5 "  # valid after stripping; carried through as written
    raw.to_csv(source, index=False)
    run(predictor, source, tmp_path / "scored.csv", explain=Explain.TOP3)

    out = pv.read_csv(tmp_path / "scored.csv", convert_options=pv.ConvertOptions(strings_can_be_null=False))
    added = [
        "risk_discontinuation",
        "risk_dose_reduction",
        "model_version_discontinuation",
        "model_version_dose_reduction",
        "applicability",
        *(f"{o}_top{k}_{what}" for o in OUTCOMES for k in (1, 2, 3) for what in ("feature", "contribution")),
    ]
    assert out.column_names == [*raw.columns, *added]
    as_text = read_table(tmp_path / "scored.csv")
    pd.testing.assert_frame_equal(as_text[list(raw.columns)], raw, check_dtype=False)
    assert as_text.loc[4, "age"] == " 71.5 "
    clean = validate_table(raw).clean
    rows = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in clean.to_dict("records")]
    warned = [";".join(f"{w['field']}:{w['kind']}" for w in predictor.applicability(row)) for row in rows]
    assert as_text["applicability"].tolist() == warned  # the API's warnings, in the API's order
    assert any(warned) and not all(warned)
    assert set(as_text["model_version_discontinuation"]) == {predictor.models["discontinuation"].version}


def test_parquet_keeps_the_input_types_and_matches_csv_scores(predictor, csv_lines, tmp_path):
    typed = generate_cohort(120, seed=3)
    typed.insert(1, "site", pd.array(range(len(typed)), dtype="int32"))
    typed.to_parquet(tmp_path / "lines.parquet", index=False)
    typed.to_csv(tmp_path / "lines.csv", index=False)
    run(predictor, tmp_path / "lines.parquet", tmp_path / "scored.parquet", explain=Explain.ALL)
    run(predictor, tmp_path / "lines.csv", tmp_path / "scored.csv", explain=Explain.ALL)

    scored = pq.read_table(tmp_path / "scored.parquet")
    source = pq.read_table(tmp_path / "lines.parquet")
    assert scored.schema.field("site").type == pa.int32()
    assert scored.select(source.column_names).equals(source.replace_schema_metadata(None))
    from_csv = read_csv(tmp_path / "scored.csv")
    for o in OUTCOMES:
        assert np.array_equal(scored[f"risk_{o}"].to_numpy(), from_csv[f"risk_{o}"].to_numpy())
        logit = scored[f"shap_{o}_base"].to_numpy() + sum(scored[f"shap_{o}_{f}"].to_numpy() for f in FIELDS)
        assert np.allclose(
            logit, np.log(scored[f"risk_{o}"].to_numpy() / (1 - scored[f"risk_{o}"].to_numpy()))
        )


def test_manifest_records_counts_hashes_and_models(predictor, csv_lines, tmp_path):
    bad = csv_lines.copy()
    bad.loc[[2, 9], "regimen"] = "XYZ"
    bad.loc[9, "age"] = "old"
    bad.to_csv(tmp_path / "lines.csv", index=False)
    output = tmp_path / "scored.parquet"
    summary = run(predictor, tmp_path / "lines.csv", output)

    rejects = tmp_path / "scored.rejects.csv"
    manifest_path = tmp_path / "scored.parquet.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest == summary.manifest
    assert manifest["counts"] == {"read": 120, "scored": 118, "rejected": 2, "reject_lines": 3}
    assert manifest["input"]["sha256"] == sha256_file(tmp_path / "lines.csv")
    assert manifest["output"] == {
        "path": "scored.parquet",
        "sha256": sha256_file(tmp_path / "scored.parquet"),
    }
    assert manifest["rejects"] == {"path": rejects.name, "sha256": sha256_file(rejects)}
    assert manifest["engine"] == "local" and manifest["explain"] == "none" and manifest["interval"] is None
    for outcome, loaded in predictor.models.items():
        assert manifest["models"][outcome] == {
            "name": loaded.name,
            "version": loaded.version,
            "sha256": loaded.digest,
            "family": loaded.model.family,
            "small_development_sample": False,
            "has_interval": loaded.model.has_interval,
        }
    assert pq.read_metadata(tmp_path / "scored.parquet").num_rows == 118
    regimen = "unknown value; expected one of R, Rd, RCd, RVd, KRd, DRd, IRd, ERd, MPR"
    assert read_csv(rejects).values.tolist() == [
        [3, csv_lines.patient_id[2], "regimen", regimen],
        [10, csv_lines.patient_id[9], "age", "not a number; expected a number from 18 to 100"],
        [10, csv_lines.patient_id[9], "regimen", regimen],
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lines.csv",
        "scored.parquet",
        "scored.parquet.manifest.json",
        "scored.rejects.csv",
    ]


def manifest_paths_follow_the_rule(manifest_path: Path) -> dict[str, str]:
    """Every path in the manifest is relative to the manifest's folder and names the file whose hash it
    records (also after the folders are moved together); returns the paths."""
    manifest = json.loads(manifest_path.read_text())
    paths = {kind: manifest[kind]["path"] for kind in ("input", "output", "rejects")}
    for kind, path in paths.items():
        assert not Path(path).is_absolute(), (kind, path)
        assert sha256_file(manifest_path.parent / path) == manifest[kind]["sha256"], kind
    return paths


def test_manifest_paths_are_relative_to_the_manifest_folder(predictor, csv_lines, tmp_path):
    for folder in ("in", "out", "elsewhere"):
        (tmp_path / "run" / folder).mkdir(parents=True)
    csv_lines.to_csv(tmp_path / "run" / "in" / "lines.csv", index=False)
    paths, table = prepare_run(
        tmp_path / "run" / "in" / "lines.csv",
        tmp_path / "run" / "out" / "scored.parquet",
        tmp_path / "run" / "elsewhere" / "rejects.csv",
    )
    score_file(predictor, paths, table)
    (tmp_path / "run").rename(tmp_path / "moved")
    assert manifest_paths_follow_the_rule(tmp_path / "moved" / "out" / "scored.parquet.manifest.json") == {
        "input": "../in/lines.csv",
        "output": "scored.parquet",
        "rejects": "../elsewhere/rejects.csv",
    }


@pytest.mark.parametrize(("suffix", "models"), [(".csv", "predictor"), (".parquet", "boosted")])
def test_rerun_gives_identical_content_and_batch_size_does_not_matter(
    request, csv_lines, tmp_path, suffix, models
):
    predictor = request.getfixturevalue(
        models
    )  # boosted: one 115-row chunk (column-wise tables) vs 7-row ones
    bad = csv_lines.copy()
    bad.loc[[0, 7, 8, 64, 119], "sex"] = "Male"
    bad.to_csv(tmp_path / "lines.csv", index=False)
    outputs = [tmp_path / f"a{suffix}", tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"]
    hashes = []
    for output, rows in zip(outputs, [BATCH_ROWS, BATCH_ROWS, 7], strict=True):
        run(predictor, tmp_path / "lines.csv", output, explain=Explain.TOP3, batch_rows=rows)
        table = pq.read_table(output) if suffix == ".parquet" else pv.read_csv(output)
        rejects = output.with_name(f"{output.stem}.rejects.csv")
        hashes.append((table, sha256_file(rejects), sha256_file(output)))
    (first, rejects_1, bytes_1), (second, rejects_2, bytes_2), (small, rejects_3, _) = hashes
    assert first.num_rows == 115
    assert first.equals(second) and rejects_1 == rejects_2
    if suffix == ".csv":
        assert bytes_1 == bytes_2
    same_scores(first, small)  # 12 blocks of about 10 rows
    assert rejects_1 == rejects_3


def test_a_failing_run_leaves_the_previous_files_untouched(predictor, csv_lines, tmp_path, monkeypatch):
    csv_lines.to_csv(tmp_path / "lines.csv", index=False)
    output = tmp_path / "scored.csv"
    output.write_text("previous run\n")
    calls = []
    original = predictor.logits

    def failing(columns, **options):
        calls.append(len(columns))
        if len(calls) == 3:
            raise MemoryError("simulated failure in the third batch")
        return original(columns, **options)

    monkeypatch.setattr(predictor, "logits", failing)
    with pytest.raises(MemoryError):
        run(predictor, tmp_path / "lines.csv", output, batch_rows=20)
    assert output.read_text() == "previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lines.csv",
        "scored.csv",
    ]  # no temporary files left


def test_counts_that_do_not_reconcile_publish_nothing(predictor, csv_lines, tmp_path, monkeypatch):
    csv_lines.to_csv(tmp_path / "lines.csv", index=False)
    original = local.score_chunk

    def losing_a_row(*args, **options):
        scored = original(*args, **options)
        return Scored(
            scored.output.slice(1), scored.rejects, scored.rows, scored.rejected, scored.row_numbers[1:]
        )

    monkeypatch.setattr(local, "score_chunk", losing_a_row)
    with pytest.raises(ReconciliationError, match="read 120, scored 119, rejected 0"):
        run(predictor, tmp_path / "lines.csv", tmp_path / "scored.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["lines.csv"]


def test_a_killed_run_leaves_no_output_under_the_final_names_and_the_next_run_removes_its_temporaries(
    registry, predictor, tmp_path
):
    generate_cohort(3000, seed=4).to_parquet(tmp_path / "lines.parquet", index=False)
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from service.batch.local import prepare_run, score_file
        from service.model_store import load_predictor
        from service.settings import get_settings

        paths, source = prepare_run(Path("lines.parquet"), Path("scored.csv"), batch_rows=500)
        predictor = load_predictor(get_settings())

        def stall(rows):  # after the first batch: report, then wait to be killed mid-run
            print("scoring", flush=True)
            time.sleep(120)

        score_file(predictor, paths, source, progress=stall)
        """
    )
    env = {**os.environ, "LENRISK_MLRUNS_DIR": str(registry["root"]), "MLFLOW_TRACKING_URI": ""}
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline() == "scoring\n"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "lines.parquet")
    assert not any(tmp_path.glob("scored*"))  # nothing under a final name
    stale = [name for name in left if name.endswith(".tmp")]
    assert len(stale) == 2 and {name.split(".")[1] for name in stale} == {"scored"}
    assert all(name.startswith((".scored.csv.", ".scored.rejects.csv.")) for name in left)

    hex32 = "0123456789abcdef" * 2
    others = [  # not temporaries of this run's files: kept
        f".scored.parquet.{hex32}.tmp",  # another output's
        f".scored.csv.x.csv.{hex32}.tmp",  # output scored.csv.x.csv's
        ".scored.csv.notes.tmp",  # not a staged file's name
        f"scored.csv.{hex32}.tmp",  # not hidden
    ]
    for name in others:
        (tmp_path / name).write_text("keep")
    summary = run(predictor, tmp_path / "lines.parquet", tmp_path / "scored.csv")
    assert summary.counts["read"] == 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["lines.parquet", "scored.csv", "scored.rejects.csv", "scored.csv.manifest.json", *others]
    )
    assert all((tmp_path / name).read_text() == "keep" for name in others)


def test_a_second_run_on_the_same_output_is_refused_and_leaves_the_first_runs_temporaries(
    predictor, csv_lines, tmp_path
):
    csv_lines.to_csv(tmp_path / "lines.csv", index=False)
    paths, table = prepare_run(tmp_path / "lines.csv", tmp_path / "scored.csv")
    with claim_outputs(paths):  # a first run, under way
        staged = StagedFile(paths.output)
        staged.tmp.write_text("in the making")
        with pytest.raises(BatchPathError, match=r"^scored.csv: another run is writing it$"):
            score_file(predictor, paths, table)
        assert staged.tmp.read_text() == "in the making"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["lines.csv", staged.tmp.name])  # no locks


def test_cli_scores_a_file_and_prints_the_reconciled_counts(lenrisk, csv_lines, tmp_path):
    bad = csv_lines.copy()
    bad.loc[5, "prior_lines"] = "-1"
    bad.to_csv(tmp_path / "lines.csv", index=False)
    result = lenrisk("--input", tmp_path / "lines.csv", "--output", tmp_path / "out.parquet", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("120 rows read = 119 scored + 1 rejected (1 reject lines); manifest ")
    rejects = tmp_path / "elsewhere.csv"
    result = lenrisk(
        "--input", tmp_path / "lines.csv", "--output", tmp_path / "out.csv", "--rejects", rejects,
        "--explain", "all", "--model-alias", "champion",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Scoring lines.csv with lenalidomide-discontinuation v1" in result.output
    assert json.loads((tmp_path / "out.csv.manifest.json").read_text())["rejects"]["path"] == rejects.name


def test_cli_unknown_alias_exits_2_before_any_output(lenrisk, csv_lines, tmp_path):
    csv_lines.to_csv(tmp_path / "lines.csv", index=False)
    result = lenrisk(
        "--input", tmp_path / "lines.csv", "--output", tmp_path / "out.csv", "--model-alias", "nope"
    )
    assert result.exit_code == 2
    assert "cannot resolve alias 'nope'" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["lines.csv"]


# ------------------------------------------------------------------------------- uncertainty intervals


def interval_lines(registry) -> pd.DataFrame:
    """40 generated lines of the session's two training settings; line 0 older than any training line (an
    input outside the training range), line 1 in a setting the session's models never saw, line 2 with CrCl
    unknown (imputed as in training: still an interval)."""
    frame = generate_cohort(40, seed=41, settings=("relapsed_refractory", "newly_diagnosed"))
    top = registry["result"].outcomes["discontinuation"].model.encoder.ranges_["age"]["max"]
    assert top + 2 <= 100  # still valid under the contract
    frame.loc[0, "age"] = top + 2
    frame.loc[1, "setting"] = "maintenance"
    frame.loc[2, "crcl_ml_min"] = np.nan
    return frame


def test_interval_columns_are_the_kernels_and_null_where_extrapolated(predictor, registry, tmp_path):
    frame = interval_lines(registry)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "lines.parquet")
    summary = run(predictor, tmp_path / "lines.parquet", tmp_path / "scored.parquet", interval=True)
    scored = pq.read_table(tmp_path / "scored.parquet")
    clean = validate_table(frame).clean
    assert len(clean) == scored.num_rows == 40
    names = scored.column_names
    assert names[names.index("risk_dose_reduction") + 1 : names.index("model_version_discontinuation")] == [
        "discontinuation_lower",
        "discontinuation_upper",
        "dose_reduction_lower",
        "dose_reduction_upper",
    ]
    for o in OUTCOMES:
        model = registry["result"].outcomes[o].model  # the trained kernel, not the registry's copy
        assert model.has_interval
        lower, upper = model.interval(clean)
        assert np.isnan(lower[:2]).all() and np.isfinite(lower[2:]).all()  # the kernel's own verdict
        got_lower, got_upper = scored[f"{o}_lower"], scored[f"{o}_upper"]
        assert got_lower.type == got_upper.type == pa.float64()
        assert got_lower.null_count == got_upper.null_count == 2  # null, not NaN
        assert got_lower[:2].to_pylist() == got_upper[:2].to_pylist() == [None, None]
        np.testing.assert_allclose(
            got_lower.to_numpy(zero_copy_only=False)[2:], lower[2:], rtol=1e-12, atol=0
        )
        np.testing.assert_allclose(
            got_upper.to_numpy(zero_copy_only=False)[2:], upper[2:], rtol=1e-12, atol=0
        )
        risk = scored[f"risk_{o}"].to_numpy()
        assert (lower[2:] < risk[2:]).all() and (risk[2:] < upper[2:]).all()
        assert np.isfinite(risk[:2]).all()  # extrapolated rows are still scored
    assert summary.manifest["interval"] == 0.95
    assert all(m["has_interval"] is True for m in summary.manifest["models"].values())


def test_interval_columns_equal_predict_rows_with_explanations_in_csv(predictor, registry, tmp_path):
    frame = interval_lines(registry)
    frame.to_csv(tmp_path / "lines.csv", index=False)
    run(predictor, tmp_path / "lines.csv", tmp_path / "scored.csv", interval=True, explain=Explain.TOP3)
    scored = read_csv(tmp_path / "scored.csv")
    clean = validate_table(frame).clean
    rows = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in clean.to_dict("records")]
    for i, prediction in enumerate(predictor.predict_rows(rows)):  # what /v1/predict answers
        for o, answer in prediction.outcomes.items():
            lower, upper = scored[f"{o}_lower"][i], scored[f"{o}_upper"][i]
            if answer.interval is None:
                assert i < 2 and np.isnan(lower) and np.isnan(upper)  # an empty CSV cell
            else:
                assert answer.interval[2] == 0.95
                assert (lower, upper) == pytest.approx(answer.interval[:2], rel=1e-12, abs=0)


def test_without_the_flag_no_interval_columns_and_the_same_scores(predictor, registry, tmp_path):
    frame = interval_lines(registry)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "lines.parquet")
    plain = run(predictor, tmp_path / "lines.parquet", tmp_path / "plain.parquet")
    run(predictor, tmp_path / "lines.parquet", tmp_path / "with.parquet", interval=True)
    without, with_ = pq.read_table(tmp_path / "plain.parquet"), pq.read_table(tmp_path / "with.parquet")
    bounds = [f"{o}_{b}" for o in OUTCOMES for b in ("lower", "upper")]
    assert not set(bounds) & set(without.column_names)
    assert without.column_names == [n for n in with_.column_names if n not in bounds]
    same_scores(without, with_.drop_columns(bounds))  # the flag adds columns, changes nothing else
    assert plain.manifest["interval"] is None


def test_a_model_without_interval_gives_null_columns(boosted, registry, tmp_path):
    frame = interval_lines(registry)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "lines.parquet")
    summary = run(boosted, tmp_path / "lines.parquet", tmp_path / "scored.parquet", interval=True)
    scored = pq.read_table(tmp_path / "scored.parquet")
    for o in OUTCOMES:
        assert scored[f"{o}_lower"].null_count == scored[f"{o}_upper"].null_count == 40
        assert np.isfinite(scored[f"risk_{o}"].to_numpy()).all()
        assert summary.manifest["models"][o]["has_interval"] is False


@pytest.fixture(scope="module")
def boosted_with_interval(boosted, cohort) -> Predictor:
    """The ``boosted`` champions, each with an ensemble of 4 quick boosted refits on patient resamples of
    the cohort (the form training gives a boosted champion; fewer, shorter refits)."""
    quick = BoostedSpec(
        num_boost_round=30, params={**BoostedSpec().params, "nthread": 1}, calibration_folds=2
    )
    groups = cohort["patient_id"].to_numpy()
    models = {}
    for outcome, loaded in boosted.models.items():
        X, y = loaded.model.encode(cohort), cohort[OUTCOMES[outcome]].to_numpy()
        fits = []
        for b, rows in enumerate(patient_resamples(groups, 4, seed=9)):
            booster, _, calibrator = quick.fit_booster(X[rows], y[rows], seed=b, groups=groups[rows])
            fits.append((booster, calibrator))
        model = dataclasses.replace(loaded.model, ensemble=interval.ensemble(fits))
        models[outcome] = dataclasses.replace(loaded, model=model)
    return Predictor(models, boosted.bands)


def test_a_boosted_champion_gives_interval_columns_equal_to_predict_rows(
    boosted_with_interval, registry, tmp_path
):
    frame = interval_lines(registry)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "lines.parquet")
    summary = run(
        boosted_with_interval, tmp_path / "lines.parquet", tmp_path / "scored.parquet", interval=True
    )
    scored = pq.read_table(tmp_path / "scored.parquet").to_pandas()
    clean = validate_table(frame).clean
    rows = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in clean.to_dict("records")]
    for i, prediction in enumerate(boosted_with_interval.predict_rows(rows)):  # what /v1/predict answers
        for o, answer in prediction.outcomes.items():
            if i < 2:  # outside the training data: no interval on either path
                assert answer.interval is None and np.isnan(scored[f"{o}_lower"][i])
                continue
            lower, upper, level = answer.interval
            assert level == 0.95 and lower < answer.probability < upper
            assert (scored[f"{o}_lower"][i], scored[f"{o}_upper"][i]) == pytest.approx(
                (lower, upper), rel=1e-12
            )
    assert all(m["has_interval"] is True for m in summary.manifest["models"].values())


def test_an_input_with_an_interval_column_name_is_refused(predictor, registry, tmp_path):
    frame = interval_lines(registry)
    frame["dose_reduction_upper"] = 1.0
    frame.to_csv(tmp_path / "lines.csv", index=False)
    with pytest.raises(
        FileFormatError, match="already has columns that scoring writes: dose_reduction_upper"
    ):
        prepare_run(tmp_path / "lines.csv", tmp_path / "out.csv")


def test_cli_interval_flag(lenrisk, registry, tmp_path):
    interval_lines(registry).to_csv(tmp_path / "lines.csv", index=False)
    result = lenrisk("--input", tmp_path / "lines.csv", "--output", tmp_path / "out.csv", "--interval")
    assert result.exit_code == 0, result.output
    assert "explain none, intervals, local" in result.output
    out = read_csv(tmp_path / "out.csv")
    assert out["discontinuation_lower"].isna().tolist() == [True, True] + [False] * 38
    assert json.loads((tmp_path / "out.csv.manifest.json").read_text())["interval"] == 0.95
