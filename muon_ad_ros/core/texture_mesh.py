"""Put a (tileable) texture on a mesh and write a GLB a digital-twin viewer opens as is.

The texture becomes the PBR baseColorTexture of the mesh's material (glTF's default sampler wraps
with REPEAT, so UVs beyond [0,1] tile the texture). UVs:

* a mesh with UVs keeps their layout; they are scaled by one factor so that one texture repeat
  covers `1/repeat` of the mesh's largest extent on average (3D area / UV area), so a texture
  placed on meshes of different sizes or UV scales has the same texel density in the world;
* a mesh without UVs gets a box projection: each face is projected along the axis its normal is
  closest to, uv = world position * repeat / largest extent - uniform density by construction.

Needs trimesh (`pip install muon_ad_ros[texture]`), imported lazily. No torch.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from muon_ad_ros.core.errors import ConfigError, ImageFormatError, ModelError

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply")


def _trimesh():
    try:
        import trimesh
    except ImportError as err:
        raise ConfigError("mesh output needs trimesh: pip install 'muon_ad_ros[texture]'") from err
    return trimesh


def load_mesh(path: str | Path):
    """One triangle mesh (a scene's meshes are concatenated in world space) with at least one face."""
    trimesh = _trimesh()
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise ModelError(f"mesh {path}: unsupported format (expected {', '.join(MESH_SUFFIXES)})")
    if not path.is_file():
        raise ModelError(f"mesh not found: {path}")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as err:  # noqa: BLE001 - any parser failure is a bad mesh file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"cannot read mesh {path}: {reason}") from None
    faces = getattr(mesh, "faces", None)
    if faces is None or len(faces) == 0:
        raise ModelError(f"mesh {path} has no faces (a point cloud or an empty file cannot be textured)")
    return mesh


def mesh_uv(mesh) -> np.ndarray | None:
    """The mesh's per-vertex UVs [V,2], or None."""
    uv = getattr(getattr(mesh, "visual", None), "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        return None
    uv = np.asarray(uv, dtype=np.float64)
    return uv if np.isfinite(uv).all() and np.ptp(uv, axis=0).max() > 0 else None


def box_project(vertices: np.ndarray, faces: np.ndarray, repeat: float):
    """Box projection: (vertices [3F,3], faces [F,3], uv [3F,2]) with every face's corners unshared,
    uv = the two world coordinates orthogonal to the face normal's dominant axis, scaled so that
    `repeat` texture periods span the largest extent."""
    tri = vertices[faces]  # [F,3,3]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F,3]
    axis = np.abs(normal).argmax(axis=1)  # [F]
    keep = np.array([[1, 2], [0, 2], [0, 1]])[axis]  # [F,2] the two axes in the projection plane
    extent = float(np.ptp(vertices, axis=0).max()) or 1.0
    origin = vertices.min(axis=0)
    corners = (tri - origin) * (repeat / extent)  # [F,3,3]
    uv = np.take_along_axis(corners, keep[:, None, :].repeat(3, axis=1), axis=2)  # [F,3,2]
    return tri.reshape(-1, 3), np.arange(3 * len(faces)).reshape(-1, 3), uv.reshape(-1, 2)


def scale_uv(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, repeat: float) -> np.ndarray:
    """Existing UVs scaled by one factor: on average, one texture period covers extent/repeat world
    units (texel density = sqrt(UV area / 3D area), matched to the box projection's)."""
    def area(p):  # p [F,3,D] -> summed triangle area
        a, b = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
        if p.shape[-1] == 2:
            return 0.5 * np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()
        return 0.5 * np.linalg.norm(np.cross(a, b), axis=1).sum()

    area_3d, area_uv = area(vertices[faces]), area(uv[faces])
    if area_uv <= 0 or area_3d <= 0:
        return uv
    extent = float(np.ptp(vertices, axis=0).max()) or 1.0
    return uv * (repeat / extent) * np.sqrt(area_3d / area_uv)


def textured_glb(mesh, texture_rgb: np.ndarray, repeat: float = 1.0) -> bytes:
    """The mesh with `texture_rgb` (uint8 [H,W,3]) as PBR baseColorTexture, as GLB bytes."""
    trimesh = _trimesh()
    from PIL import Image

    if repeat <= 0 or not np.isfinite(repeat):
        raise ConfigError(f"--repeat must be > 0, got {repeat}")
    if texture_rgb.dtype != np.uint8 or texture_rgb.ndim != 3 or texture_rgb.shape[2] != 3:
        raise ImageFormatError(f"texture must be uint8 HxWx3, got {texture_rgb.dtype} {texture_rgb.shape}")
    vertices, faces = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    uv = mesh_uv(mesh)
    if uv is None:
        vertices, faces, uv = box_project(vertices, faces, repeat)
    else:
        uv = scale_uv(vertices, faces, uv, repeat)
    material = trimesh.visual.material.PBRMaterial(
        name="synthesized_texture", baseColorTexture=Image.fromarray(texture_rgb),
        metallicFactor=0.0, roughnessFactor=0.9)
    out = trimesh.Trimesh(vertices=vertices, faces=faces, process=False,
                          visual=trimesh.visual.TextureVisuals(uv=uv, material=material))
    return out.export(file_type="glb")


def write_file_atomic(path: str | Path, data: bytes) -> Path:
    """Write bytes through a temporary file + os.replace (core.atomic_io.atomic_write_bytes):
    the final name only ever holds a complete file. Missing parent folders are created."""
    from muon_ad_ros.core.atomic_io import atomic_write_bytes

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    except OSError as err:
        try:  # atomic_write_bytes' temporary file, if the failure came after creating it
            path.with_name(f".{path.name}.tmp-{os.getpid()}").unlink(missing_ok=True)
        except OSError:
            pass
        raise ConfigError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def write_textured_glb(mesh, texture_rgb: np.ndarray, out_path: str | Path, repeat: float = 1.0) -> Path:
    """Texture a loaded mesh (load_mesh) and write the GLB atomically."""
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".glb":
        raise ConfigError(f"--mesh-out must be a .glb file, got {out_path}")
    return write_file_atomic(out_path, textured_glb(mesh, texture_rgb, repeat))


def glb_texture(path: str | Path) -> np.ndarray:
    """The baseColorTexture of a GLB written by `write_textured_glb`, as uint8 [H,W,3] (checks)."""
    trimesh = _trimesh()
    mesh = trimesh.load(str(path), force="mesh", process=False)
    image = getattr(getattr(mesh.visual, "material", None), "baseColorTexture", None)
    if image is None:
        raise ModelError(f"{path}: no baseColorTexture")
    return np.asarray(image.convert("RGB"))
