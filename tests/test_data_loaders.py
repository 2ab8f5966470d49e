"""Tests for the real-data loaders in pymdbn.data; all fixtures live in tmp_path."""

import numpy as np
import pytest
from PIL import Image

from pymdbn.data import (
    DataLoadError,
    Dataset,
    load_dicom,
    load_image_folder,
    load_manifest,
    load_medmnist_npz,
    load_nifti,
    yolo_mask,
)


def _gradient(h, w, dtype=np.uint8):
    top = np.iinfo(dtype).max
    return (np.linspace(0, 1, h * w).reshape(h, w) * top).astype(dtype)


@pytest.fixture
def folder(tmp_path):
    """benign/ and malignant/ class folders in several formats, with annotations."""
    root = tmp_path / "set"
    (root / "benign").mkdir(parents=True)
    (root / "malignant").mkdir()
    Image.fromarray(np.full((20, 30), 255, np.uint8)).save(root / "benign" / "a.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8) + np.array([255, 0, 0], np.uint8)).save(root / "benign" / "b.jpg", quality=100)
    Image.fromarray(_gradient(40, 40, np.uint16)).save(root / "malignant" / "c.tif")
    Image.fromarray(_gradient(32, 32)).save(root / "malignant" / "d.pgm")
    mask = np.zeros((40, 40), np.uint8)
    mask[:20, :20] = 1
    Image.fromarray(mask).save(root / "malignant" / "c_mask.png")
    (root / "malignant" / "d.txt").write_text("0 0.75 0.25 0.5 0.5\n")
    return root


def test_image_folder_values_shapes_labels(folder):
    ds = load_image_folder(folder, modality="us", size=8)
    assert isinstance(ds, Dataset) and len(ds) == 4
    assert ds.modalities == ("us",)
    assert ds.classes == ["benign", "malignant"]
    np.testing.assert_array_equal(ds.y, [0, 0, 1, 1])
    assert ds.y.dtype == np.int64
    X = ds.X["us"]
    assert X.shape == (4, 8, 8) and X.dtype == np.float32
    assert X.min() >= 0 and X.max() <= 1
    np.testing.assert_allclose(X[0], 1.0)  # white 8-bit PNG
    np.testing.assert_allclose(X[1], 0.299, atol=0.02)  # red JPEG -> luma
    assert X[2, 0, 0] < 0.1 and X[2, -1, -1] > 0.9  # 16-bit TIFF gradient, full range
    assert ds.original_shapes["us"] == [(20, 30), (16, 16), (40, 40), (32, 32)]
    assert [p.rsplit("/", 1)[-1] for p in ds.paths["us"]] == ["a.png", "b.jpg", "c.tif", "d.pgm"]
    assert ds.patient_ids is None


def test_image_folder_masks_and_yolo_boxes(folder):
    ds = load_image_folder(folder, size=8)
    masks = ds.masks["image"]
    assert masks.shape == (4, 8, 8) and masks.dtype == bool
    assert not masks[:2].any()  # no annotation -> empty mask
    expected = np.zeros((8, 8), bool)
    expected[:4, :4] = True
    np.testing.assert_array_equal(masks[2], expected)  # mask image, nearest resize
    expected = np.zeros((8, 8), bool)
    expected[:4, 4:] = True  # box centred at (0.75, 0.25), half the image wide and high
    np.testing.assert_array_equal(masks[3], expected)


def test_image_folder_without_annotations_has_no_masks(folder):
    ds = load_image_folder(folder, classes=["benign"], size=4)
    assert ds.masks == {"image": None}
    assert ds.classes == ["benign"] and len(ds) == 2


def test_image_folder_native_size(tmp_path):
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        Image.fromarray(_gradient(6, 5)).save(tmp_path / name / "i.bmp")
    ds = load_image_folder(tmp_path, size=None)
    assert ds.X["image"].shape == (2, 6, 5)
    np.testing.assert_allclose(ds.X["image"][0], _gradient(6, 5) / 255, atol=1e-6)


def test_yolo_mask_rasterisation(tmp_path):
    boxes = tmp_path / "b.txt"
    boxes.write_text("1 0.5 0.5 0.2 0.2\n\n0 0.1 0.9 0.2 0.2\n")
    mask = yolo_mask(boxes, (10, 10))
    expected = np.zeros((10, 10), bool)
    expected[4:6, 4:6] = True
    expected[8:10, 0:2] = True
    np.testing.assert_array_equal(mask, expected)
    (tmp_path / "empty.txt").write_text("")
    assert not yolo_mask(tmp_path / "empty.txt", (4, 4)).any()
    (tmp_path / "bad.txt").write_text("0 0.5 0.5\n")
    with pytest.raises(DataLoadError, match="bad.txt.*line 1"):
        yolo_mask(tmp_path / "bad.txt", (4, 4))


def test_corrupt_file_raises_naming_it(folder):
    (folder / "benign" / "broken.png").write_bytes(np.random.default_rng(0).bytes(200))
    with pytest.raises(DataLoadError, match="broken.png"):
        load_image_folder(folder)


def test_corrupt_files_skipped_with_one_warning(folder):
    rng = np.random.default_rng(0)
    for i in range(5):
        (folder / "benign" / f"broken{i}.png").write_bytes(rng.bytes(100))
    with pytest.warns(UserWarning, match=r"skipped 5 unreadable file\(s\).*broken0.png.*and 2 more") as record:
        ds = load_image_folder(folder, on_error="skip")
    assert len(record) == 1
    assert len(ds) == 4 and not any("broken" in p for p in ds.paths["image"])


def test_corrupt_mask_is_named(folder):
    (folder / "malignant" / "c_mask.png").write_bytes(b"not a png")
    with pytest.raises(DataLoadError, match="c_mask.png"):
        load_image_folder(folder)


def test_mask_shape_mismatch(folder):
    Image.fromarray(np.ones((5, 5), np.uint8)).save(folder / "malignant" / "c_mask.png")
    with pytest.raises(DataLoadError, match="c_mask.png.*shape"):
        load_image_folder(folder)


def test_empty_folders_raise(tmp_path):
    with pytest.raises(DataLoadError, match="no class subfolders"):
        load_image_folder(tmp_path)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "notes.csv").write_text("x")
    with pytest.raises(DataLoadError, match="cls has no images"):
        load_image_folder(tmp_path)
    with pytest.raises(DataLoadError, match="missing"):
        load_image_folder(tmp_path, classes=["missing"])
    with pytest.raises(DataLoadError, match="not a folder"):
        load_image_folder(tmp_path / "nowhere")


def test_all_files_corrupt_is_an_error(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.png").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="skipped 1"):
        with pytest.raises(DataLoadError, match="no image"):
            load_image_folder(tmp_path, on_error="skip")


def test_bad_options(folder):
    with pytest.raises(ValueError, match="on_error"):
        load_image_folder(folder, on_error="ignore")
    with pytest.raises(ValueError, match="size"):
        load_image_folder(folder, size=0)


def _medmnist(path, rgb=False):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 3, (n, 1))
    np.savez(path, **arrays)
    return arrays


def test_medmnist_npz(tmp_path):
    arrays = _medmnist(tmp_path / "m.npz")
    ds = load_medmnist_npz(tmp_path / "m.npz", split="test")
    assert ds.X["image"].shape == (3, 28, 28) and ds.X["image"].dtype == np.float32
    np.testing.assert_allclose(ds.X["image"], arrays["test_images"] / 255, atol=1e-6)
    np.testing.assert_array_equal(ds.y, arrays["test_labels"][:, 0])
    assert ds.y.dtype == np.int64 and ds.masks == {"image": None}
    assert ds.original_shapes["image"] == [(28, 28)] * 3
    assert ds.paths["image"][2].endswith("m.npz:test_images[2]")
    assert load_medmnist_npz(tmp_path / "m.npz", size=16).X["image"].shape == (6, 16, 16)


def test_medmnist_rgb_and_errors(tmp_path):
    arrays = _medmnist(tmp_path / "rgb.npz", rgb=True)
    ds = load_medmnist_npz(tmp_path / "rgb.npz", split="val", modality="derma")
    luma = arrays["val_images"] @ np.array([0.299, 0.587, 0.114]) / 255
    np.testing.assert_allclose(ds.X["derma"], luma, atol=1e-5)
    with pytest.raises(ValueError, match="split"):
        load_medmnist_npz(tmp_path / "rgb.npz", split="dev")
    np.savez(tmp_path / "partial.npz", train_images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataLoadError, match="partial.npz.*train_labels"):
        load_medmnist_npz(tmp_path / "partial.npz")
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    with pytest.raises(DataLoadError, match="junk.npz"):
        load_medmnist_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "multi.npz", train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="one label per image"):
        load_medmnist_npz(tmp_path / "multi.npz")


@pytest.fixture
def manifest(tmp_path):
    """Three patients with an MRI and an X-ray each; masks for the MRIs."""
    (tmp_path / "scans").mkdir()
    lines = ["patient_id,modality,path,label,mask_path"]
    for i, label in enumerate(["benign", "malignant", "malignant"]):
        Image.fromarray(np.full((12, 12), 50 * i, np.uint8)).save(tmp_path / "scans" / f"p{i}_mri.png")
        Image.fromarray(np.full((10, 14), 100 + i, np.uint8)).save(tmp_path / "scans" / f"p{i}_xr.png")
        mask = np.zeros((12, 12), np.uint8)
        mask[6:, 6:] = 255
        Image.fromarray(mask).save(tmp_path / "scans" / f"p{i}_seg.png")
        lines.append(f"P{i},mri,scans/p{i}_mri.png,{label},scans/p{i}_seg.png")
        lines.append(f"P{i},xray,scans/p{i}_xr.png,{label},")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_manifest_pairs_modalities(manifest):
    ds = load_manifest(manifest, size=6)
    assert ds.modalities == ("mri", "xray")
    assert ds.patient_ids == ["P0", "P1", "P2"]
    assert ds.classes == ["benign", "malignant"]
    np.testing.assert_array_equal(ds.y, [0, 1, 1])
    np.testing.assert_allclose(ds.X["mri"][:, 0, 0], [0, 50 / 255, 100 / 255], atol=1e-6)
    np.testing.assert_allclose(ds.X["xray"][:, 0, 0], [100 / 255, 101 / 255, 102 / 255], atol=1e-6)
    assert ds.masks["xray"] is None
    assert ds.masks["mri"].shape == (3, 6, 6) and ds.masks["mri"][:, 3:, 3:].all()
    assert ds.masks["mri"].sum() == 3 * 9
    assert ds.original_shapes == {"mri": [(12, 12)] * 3, "xray": [(10, 14)] * 3}
    assert ds.paths["xray"][1].endswith("p1_xr.png")


def test_manifest_modality_selection(manifest):
    ds = load_manifest(manifest, size=4, modalities=["xray"])
    assert ds.modalities == ("xray",) and len(ds) == 3
    with pytest.raises(ValueError, match="ct"):
        load_manifest(manifest, modalities=["ct"])


def test_manifest_inconsistent_label(manifest):
    text = manifest.read_text().replace("P1,xray,scans/p1_xr.png,malignant", "P1,xray,scans/p1_xr.png,benign")
    manifest.write_text(text)
    with pytest.raises(ValueError, match="'P1'.*inconsistent"):
        load_manifest(manifest)


def test_manifest_missing_modality(manifest):
    manifest.write_text("\n".join(line for line in manifest.read_text().splitlines() if "P2,xray" not in line))
    with pytest.raises(ValueError, match="P2: xray"):
        load_manifest(manifest)
    with pytest.warns(UserWarning, match="dropped 1 patient.*P2: xray"):
        ds = load_manifest(manifest, require_all=False, size=4)
    assert ds.patient_ids == ["P0", "P1"]


def test_manifest_unreadable_scan(manifest):
    (manifest.parent / "scans" / "p1_xr.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataLoadError, match="p1_xr.png"):
        load_manifest(manifest)
    with pytest.warns(UserWarning, match="skipped 1 unreadable.*p1_xr.png") as record:
        ds = load_manifest(manifest, on_error="skip", size=4)
    assert len(record) == 1
    assert ds.patient_ids == ["P0", "P2"]  # never half-loaded
    (manifest.parent / "scans" / "p0_mri.png").unlink()
    with pytest.raises(DataLoadError, match="p0_mri.png does not exist"):
        load_manifest(manifest)


def test_manifest_malformed(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient,modality,path\nP0,mri,x.png\n")
    with pytest.raises(ValueError, match=r"lacks columns \['patient_id', 'label'\]"):
        load_manifest(bad)
    bad.write_text("patient_id,modality,path,label\n")
    with pytest.raises(DataLoadError, match="no rows"):
        load_manifest(bad)
    bad.write_text("patient_id,modality,path,label\nP0,mri,a.png,0\nP0,mri,b.png,0\n")
    with pytest.raises(ValueError, match="more than one 'mri'"):
        load_manifest(bad)


def test_manifest_integer_labels(manifest):
    manifest.write_text(manifest.read_text().replace(",benign,", ",0,").replace(",malignant,", ",1,"))
    ds = load_manifest(manifest, size=4, classes=["healthy", "cancer"])
    assert ds.classes == ["healthy", "cancer"]
    np.testing.assert_array_equal(ds.y, [0, 1, 1])


def _write_dicom(path, pixels, **attributes):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset as DicomDataset
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), DicomDataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = attributes.pop("PatientID", "anon")
    ds.Modality = "OT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = attributes.pop("PhotometricInterpretation", "MONOCHROME2")
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = 16
    ds.BitsStored = attributes.pop("BitsStored", 16)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_scaling_window_and_rescale(tmp_path):
    pytest.importorskip("pydicom")
    pixels = np.array([[0, 1024], [2048, 4095]], np.uint16)
    _write_dicom(tmp_path / "a.dcm", pixels, BitsStored=12, PatientID="P7",
                 RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=2048)
    ds = load_dicom(tmp_path / "a.dcm", size=None, labels=1, classes=["no", "yes"])
    np.testing.assert_allclose(ds.X["image"][0], pixels / 4095, atol=1e-6)
    assert ds.patient_ids == ["P7"] and ds.y.tolist() == [1] and ds.classes == ["no", "yes"]
    hu = pixels - 1024.0  # rescale to Hounsfield-like units first
    auto = load_dicom(tmp_path / "a.dcm", size=None, window="auto").X["image"][0]
    np.testing.assert_allclose(auto, np.clip((hu + 1024) / 2048, 0, 1), atol=1e-6)
    explicit = load_dicom([tmp_path / "a.dcm"], size=None, window=(1000, 2000)).X["image"][0]
    np.testing.assert_allclose(explicit, np.clip(hu / 2000, 0, 1), atol=1e-6)
    assert load_dicom(tmp_path / "a.dcm", size=None).y.tolist() == [-1]


def test_dicom_folder_multiframe_monochrome1_and_errors(tmp_path):
    pytest.importorskip("pydicom")
    frames = np.stack([np.full((4, 6), v, np.uint16) for v in (0, 30000, 65535)])
    _write_dicom(tmp_path / "multi", frames)
    _write_dicom(tmp_path / "mono1", np.full((4, 6), 65535, np.uint16), PhotometricInterpretation="MONOCHROME1")
    ds = load_dicom(tmp_path, size=3, labels=[0, 1])
    assert ds.X["image"].shape == (2, 3, 3)
    np.testing.assert_allclose(ds.X["image"][0], 0.0, atol=1e-6)  # MONOCHROME1 inverted
    np.testing.assert_allclose(ds.X["image"][1], 30000 / 65535, atol=1e-6)  # middle frame
    assert ds.original_shapes["image"] == [(4, 6), (4, 6)]
    first = load_dicom(tmp_path / "multi", size=None, slice_index=0).X["image"][0]
    np.testing.assert_allclose(first, 0.0)
    (tmp_path / "junk.dcm").write_bytes(b"nothing to see")
    with pytest.raises(DataLoadError, match="junk.dcm"):
        load_dicom(tmp_path)
    with pytest.warns(UserWarning, match="skipped 1.*junk.dcm"):
        assert len(load_dicom(tmp_path, on_error="skip")) == 2


def test_nifti_slices_and_windows(tmp_path):
    nib = pytest.importorskip("nibabel")
    volume = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    ds = load_nifti(tmp_path / "v.nii.gz", size=None, labels=0)
    middle = np.rot90(volume[:, :, 1])
    np.testing.assert_allclose(ds.X["image"][0], middle / volume.max(), atol=1e-6)
    assert ds.original_shapes["image"] == [(5, 4)]
    first = load_nifti(tmp_path / "v.nii.gz", size=None, slice_index=0, axis=0).X["image"][0]
    np.testing.assert_allclose(first, np.rot90(volume[0]) / volume.max(), atol=1e-6)
    windowed = load_nifti(tmp_path, size=None, window=(30, 20)).X["image"][0]
    np.testing.assert_allclose(windowed, np.clip((middle - 20) / 20, 0, 1), atol=1e-6)
    assert load_nifti(tmp_path, size=8).X["image"].shape == (1, 8, 8)
    with pytest.raises(DataLoadError, match="slice_index"):
        load_nifti(tmp_path / "v.nii.gz", slice_index=7)


def test_manifest_with_nifti_mask(tmp_path):
    nib = pytest.importorskip("nibabel")
    volume = np.random.default_rng(0).random((6, 6, 3)).astype(np.float32)
    seg = np.zeros((6, 6, 3), np.uint8)
    seg[:3, :, 1] = 2
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "t1.nii")
    nib.save(nib.Nifti1Image(seg, np.eye(4)), tmp_path / "seg.nii")
    (tmp_path / "m.csv").write_text("patient_id,modality,path,label,mask_path\nA,brain,t1.nii,1,seg.nii\n")
    ds = load_manifest(tmp_path / "m.csv", size=None)
    np.testing.assert_array_equal(ds.masks["brain"][0], np.rot90(seg[:, :, 1] > 0))
    assert ds.classes == ["0", "1"] and ds.y.tolist() == [1]


@pytest.mark.parametrize("module, loader, extra", [("pydicom", load_dicom, "dicom"), ("nibabel", load_nifti, "nifti")])
def test_missing_optional_dependency_message(tmp_path, monkeypatch, module, loader, extra):
    (tmp_path / "scan.nii").write_bytes(b"x")
    monkeypatch.setitem(__import__("sys").modules, module, None)  # makes the import fail
    with pytest.raises(ImportError, match=rf"pip install pymdbn\[{extra}\]"):
        loader(tmp_path / "scan.nii")


def test_loaders_return_class_names(folder, tmp_path):
    """Names for every loader: subfolders, label values, or classes= for integer labels."""
    assert load_image_folder(folder, size=4).classes == ["benign", "malignant"]
    _medmnist(tmp_path / "m.npz")
    ds = load_medmnist_npz(tmp_path / "m.npz", split="train")
    assert ds.classes == [str(k) for k in range(int(ds.y.max()) + 1)]
    named = load_medmnist_npz(tmp_path / "m.npz", split="train", classes=["a", "b", "c"])
    assert named.classes == ["a", "b", "c"]
    np.testing.assert_array_equal(named.y, ds.y)
    with pytest.raises(ValueError, match="distinct"):
        load_medmnist_npz(tmp_path / "m.npz", classes=["a", "a", "b"])


def test_manifest_class_names_must_be_distinct(manifest):
    manifest.write_text(manifest.read_text().replace(",benign,", ",0,").replace(",malignant,", ",1,"))
    with pytest.raises(ValueError, match="distinct"):
        load_manifest(manifest, size=4, classes=["x", "x"])
    assert load_manifest(manifest, size=4).classes == ["0", "1"]
