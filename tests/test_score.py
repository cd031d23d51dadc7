"""submission.csv and the Kaggle score (spec section 4)."""
import numpy as np
import pytest

from lab4.errors import Lab4Error
from lab4.cli import score_main as main
from lab4.score import copy_first_frame, kaggle_score, read_submission, write_submission

N_ROWS, N_VALUES = 3150, 6144
PSNR_MSE_100 = 20 * np.log10(255) - 20          # 28.1308 dB


def write_text_csv(path, rows, n_values):
    """A submission-format CSV written by hand: rows is a list of value strings per row."""
    header = "id," + ",".join(str(i) for i in range(n_values))
    path.write_text(header + "\n" + "".join(f"{i},{r}\n" for i, r in enumerate(rows)))
    return path


def constant_csv(path, value, n_rows=N_ROWS, n_values=N_VALUES):
    row = ",".join([str(value)] * n_values)
    return write_text_csv(path, [row] * n_rows, n_values)


# ---- writing ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_submission(tmp_path_factory):
    """A full-size submission: channel R = 0.2, G = 0.5, B = 1.3, one value -0.2."""
    frames = np.empty((5, 630, 3, 32, 64), np.float32)
    frames[:, :, 0], frames[:, :, 1], frames[:, :, 2] = 0.2, 0.5, 1.3
    frames[0, 0, 0, 0, 1] = -0.2
    path = tmp_path_factory.mktemp("sub") / "out" / "submission.csv"
    assert write_submission(frames, path) == path
    return path


def test_header_and_ids(full_submission):
    lines = full_submission.read_text().splitlines()
    assert lines[0] == "id," + ",".join(str(i) for i in range(6144))
    assert len(lines) == 1 + 3150
    assert [int(line.split(",", 1)[0]) for line in lines[1:]] == list(range(3150))
    assert not [p for p in full_submission.parent.iterdir() if p != full_submission]   # no temp file left


def test_values_are_rint_clipped_channel_first(full_submission):
    first = full_submission.read_text().splitlines()[1].split(",")
    assert first[0] == "0"
    values = first[1:]
    assert values[0] == "51" and values[1] == "0"          # rint(0.2*255) = 51; -0.2 -> 0
    assert values[2048] == "128"                           # G: rint(127.5) = 128
    assert values[4096] == "255"                           # B: 1.3 -> 255
    assert set(values[2:2048]) == {"51"} and set(values[2048:4096]) == {"128"} and set(values[4096:]) == {"255"}


def test_round_trip(full_submission):
    rows = read_submission(full_submission)
    assert rows.shape == (3150, 6144) and rows.dtype == np.uint8
    expected = np.repeat(np.array([51, 128, 255], np.uint8), 2048)
    assert (rows[1:] == expected).all()
    assert rows[0, 1] == 0 and rows[0, 0] == 51


def test_uint8_frames_are_written_as_is(tmp_path):
    frames = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2) * 20   # (T, 3, H, W)
    path = write_submission(frames, tmp_path / "s.csv")
    rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=int)
    np.testing.assert_array_equal(rows[:, 0], [0, 1])
    np.testing.assert_array_equal(rows[:, 1:], frames.reshape(2, -1))


# ---- the score -------------------------------------------------------------------------------
def const(value, n_values=12):
    return np.full((N_ROWS, n_values), value, np.uint8)


def test_score_of_a_constant_error_by_hand():
    res = kaggle_score(const(100), const(110))
    assert res["score"] == pytest.approx(PSNR_MSE_100)
    assert res["score"] == pytest.approx(28.1308, abs=1e-4)
    assert res["frames"] == 3000 and res["psnr"].shape == (3150,)


def test_first_frames_and_frames_after_600_are_not_scored():
    sub = const(110)
    i = np.arange(N_ROWS) % 630
    sub[(i == 0) | (i > 600)] = 255                       # wildly wrong where Kaggle does not look
    assert kaggle_score(const(100), sub)["score"] == pytest.approx(PSNR_MSE_100)
    sub[i == 600] = 255                                    # frame 600 is scored
    assert kaggle_score(const(100), sub)["score"] < PSNR_MSE_100 - 0.01


def test_public_and_private_parts():
    sub = const(110)
    sub[3 * 630:] = 120                                    # MSE 400 on sequences 3-4
    res = kaggle_score(const(100), sub)
    private = 20 * np.log10(255) - 10 * np.log10(400)
    assert res["public"] == pytest.approx(PSNR_MSE_100)
    assert res["private"] == pytest.approx(private)
    assert res["score"] == pytest.approx((1800 * PSNR_MSE_100 + 1200 * private) / 3000)


def test_perfect_frames_are_capped_at_100_db():
    res = kaggle_score(const(7), const(7))
    assert res["score"] == 100.0 and np.isfinite(res["psnr"]).all()


def test_copy_first_frame():
    rows = np.arange(N_ROWS, dtype=np.uint16)[:, None].repeat(4, 1) % 251
    base = copy_first_frame(rows.astype(np.uint8))
    assert base.shape == (N_ROWS, 4)
    for s in range(5):
        assert (base[630 * s:630 * (s + 1)] == rows[630 * s]).all()


def test_submission_of_the_wrong_shape_is_refused():
    with pytest.raises(Lab4Error, match="shape"):
        kaggle_score(const(0), const(0)[:630])


# ---- malformed files -------------------------------------------------------------------------
SMALL = 4   # values per row in the malformed-file tests (read with n_values=SMALL)


def _set(lines, row, col, text):
    cells = lines[row + 1].split(",")
    cells[col + 1] = text
    lines[row + 1] = ",".join(cells)


def _swap_ids(lines):
    a, b = lines[6].split(",", 1), lines[7].split(",", 1)
    lines[6], lines[7] = f"{b[0]},{a[1]}", f"{a[0]},{b[1]}"


MALFORMED = {
    "wrong header": (lambda ls: ls.__setitem__(0, "id,1,0,2,3"), "header must be id,0,1,...,3"),
    "3149 rows": (lambda ls: ls.pop(), "expected 3150 rows.*found 3149"),
    "ids out of order": (_swap_ids, "ids must be 0..3149 in order; row 5 has id 6"),
    "value 256": (lambda ls: _set(ls, 10, 2, "256"), "0..255"),
    "negative value": (lambda ls: _set(ls, 10, 2, "-1"), "0..255"),
    "non-integer value": (lambda ls: _set(ls, 10, 2, "12.5"), "integers"),
    "empty cell": (lambda ls: _set(ls, 10, 2, ""), "empty or non-numeric value in row 10"),
    "text value": (lambda ls: _set(ls, 10, 2, "abc"), "non-numeric|not a readable CSV"),
    "extra column": (lambda ls: _set(ls, 10, 3, "1,2"), "not a readable CSV"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_file_is_refused_naming_file_and_problem(case, tmp_path):
    mutate, message = MALFORMED[case]
    path = constant_csv(tmp_path / "sub.csv", 9, n_values=SMALL)
    read_submission(path, n_values=SMALL)                  # valid before the change
    lines = path.read_text().splitlines()
    mutate(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(Lab4Error, match=message) as e:
        read_submission(path, n_values=SMALL)
    assert str(path) in str(e.value)


def test_a_png_given_as_submission_is_refused(tmp_path):
    path = tmp_path / "sub.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(Lab4Error, match="sub.png: not a readable CSV"):
        read_submission(path)


@pytest.mark.parametrize("name", ["sub.csv.gz", "sub.zip"])
def test_a_damaged_compressed_submission_is_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(bytes(range(256)))
    with pytest.raises(Lab4Error, match=name):
        read_submission(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(Lab4Error, match="no such file"):
        read_submission(tmp_path / "nope.csv")


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(Lab4Error, match="empty.csv"):
        read_submission(path)


# ---- lab4-score ------------------------------------------------------------------------------
def test_cli_bad_file_exits_2_with_one_line(tmp_path, capsys):
    sol = constant_csv(tmp_path / "sol.csv", 1, n_values=SMALL)
    bad = constant_csv(tmp_path / "bad.csv", 1, n_values=SMALL)
    assert main(["--solution", str(sol), "--submission", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("lab4-score: error: ") and err.count("\n") == 1
    assert "sol.csv" in err and "header" in err


@pytest.fixture(scope="module")
def full_solution(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return constant_csv(d / "solution.csv", 1), constant_csv(d / "sub.csv", 11)


@pytest.mark.slow
def test_cli_scores_a_good_file(full_solution, capsys):
    sol, sub = full_solution
    assert main(["--solution", str(sol), "--submission", str(sub), "--baseline"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("score 28.131 dB  (public 28.131, private 28.131, 3000 frames)")
    assert "copy-first-frame baseline 100.000 dB" in out
    assert err == ""


def test_cli_submission_with_the_wrong_row_count(full_solution, tmp_path, capsys):
    sol, _ = full_solution
    short = constant_csv(tmp_path / "short.csv", 1, n_rows=630)
    assert main(["--solution", str(sol), "--submission", str(short)]) == 2
    err = capsys.readouterr().err
    assert "short.csv" in err and "expected 3150 rows" in err and err.count("\n") == 1
