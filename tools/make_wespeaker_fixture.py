"""Computes the WeSpeaker parity fixture with WeSpeaker's own model code (run once; the result is committed).

    git clone https://github.com/wenet-e2e/wespeaker WS      # read at commit dfa7419; only torch is needed
    python tools/make_wespeaker_fixture.py WS tests/fixtures/wespeaker_tiny.npz dfa7419

WeSpeaker's model modules (``wespeaker/models/*.py``) are imported straight from the checkout, without
installing WeSpeaker or running its package ``__init__`` (which needs its CLI's dependencies). For each
case below the script builds a tiny WeSpeaker model (fixed seed), gives every batch norm random
statistics and affine parameters (so that misplaced ones show), adds the training head WeSpeaker's
``train.py`` adds (``projection``, an ArcMarginProduct), rounds every float tensor to float16 precision
(they are stored as float16, so the fixture stays small; the test casts them back to float32, the values
WeSpeaker ran with), and stores:

- ``<case>/config``: WeSpeaker's ``model`` and ``model_args`` for the test's ``config.yaml`` (JSON);
- ``<case>/state``: the ``state_dict`` under WeSpeaker's own key names, as ``avg_model.pt`` holds it, as one
  flat float16 array, and ``<case>/keys``: its index (JSON ``[key, shape, dtype]`` in order; one entry per
  tensor keeps the file small);
- ``<case>/long``, ``<case>/short``: WeSpeaker's embeddings (``outputs[-1]``, eval mode, float32) of the
  feature batches ``feats_long`` ``[2, 250, 16]`` and ``feats_short`` ``[1, 40, 16]``;
- ``published_layouts``: the key names and shapes of the full-size published models (``model_args`` of
  ``examples/voxceleb/v2/conf``) and of CAM++ with ASTP, with their parameter counts, without values (JSON).

The widths WeSpeaker fixes in code are shrunk after construction with WeSpeaker's own classes: the
ResNets' ``m_channels`` (a ``ResNet`` argument the depth factories do not pass), ECAPA's aggregation
convolution, pooling and embedding layers (1536 channels in code), and CAM++'s front-end channels
(the default of ``FCM``'s ``m_channels``). The forward code is WeSpeaker's, unchanged.
"""

import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

checkout, out, commit = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), sys.argv[3]
package = types.ModuleType("wespeaker")
package.__path__ = [str(checkout / "wespeaker")]
sys.modules["wespeaker"] = package
from wespeaker.models import campplus, ecapa_tdnn, pooling_layers, projections, resnet  # noqa: E402

FEAT_DIM, EMBED_DIM, CLASSES = 16, 16, 5
torch.set_num_threads(1)


def randomise_batch_norms(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.num_batches_tracked.fill_(1000)
            if module.affine:
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.normal_(0.0, 0.1)


def tiny_resnet34() -> nn.Module:
    return resnet.ResNet(resnet.BasicBlock, [3, 4, 6, 3], m_channels=2, feat_dim=FEAT_DIM, embed_dim=EMBED_DIM,
                         pooling_func="TSTP", two_emb_layer=False)


def tiny_resnet18_tap() -> nn.Module:
    return resnet.ResNet(resnet.BasicBlock, [2, 2, 2, 2], m_channels=2, feat_dim=FEAT_DIM, embed_dim=EMBED_DIM,
                         pooling_func="TAP", two_emb_layer=False)


def tiny_resnet50_astp_two_emb() -> nn.Module:
    return resnet.ResNet(resnet.Bottleneck, [3, 4, 6, 3], m_channels=1, feat_dim=FEAT_DIM, embed_dim=EMBED_DIM,
                         pooling_func="ASTP", two_emb_layer=True)


def tiny_ecapa(global_context: bool, pooling: str, emb_bn: bool) -> nn.Module:
    model = ecapa_tdnn.ECAPA_TDNN(channels=16, feat_dim=FEAT_DIM, embed_dim=EMBED_DIM, pooling_func=pooling,
                                  global_context_att=global_context, emb_bn=emb_bn)
    model.conv = nn.Conv1d(3 * 16, 24, kernel_size=1)
    if pooling == "ASTP":
        model.pool = pooling_layers.ASTP(in_dim=24, bottleneck_dim=8, global_context_att=global_context)
    else:
        model.pool = getattr(pooling_layers, pooling)(in_dim=24)
    model.bn = nn.BatchNorm1d(model.pool.get_out_dim())
    model.linear = nn.Linear(model.pool.get_out_dim(), EMBED_DIM)
    return model


def tiny_campplus() -> nn.Module:
    defaults = campplus.FCM.__init__.__defaults__
    campplus.FCM.__init__.__defaults__ = (4, defaults[1])  # m_channels 4 instead of 32
    try:
        return campplus.CAMPPlus(feat_dim=FEAT_DIM, embed_dim=EMBED_DIM, pooling_func="TSTP", growth_rate=2,
                                 bn_size=2, init_channels=8)
    finally:
        campplus.FCM.__init__.__defaults__ = defaults


# case -> (builder, WeSpeaker's config entries)
CASES = {
    "resnet34": (tiny_resnet34, {"model": "ResNet34", "model_args": {
        "feat_dim": FEAT_DIM, "embed_dim": EMBED_DIM, "pooling_func": "TSTP", "two_emb_layer": False}}),
    "resnet18_tap": (tiny_resnet18_tap, {"model": "ResNet18", "model_args": {
        "feat_dim": FEAT_DIM, "embed_dim": EMBED_DIM, "pooling_func": "TAP", "two_emb_layer": False}}),
    "resnet50_astp_two_emb": (tiny_resnet50_astp_two_emb, {"model": "ResNet50", "model_args": {
        "feat_dim": FEAT_DIM, "embed_dim": EMBED_DIM, "pooling_func": "ASTP", "two_emb_layer": True}}),
    "ecapa_glob_c512": (lambda: tiny_ecapa(True, "ASTP", False), {"model": "ECAPA_TDNN_GLOB_c512", "model_args": {
        "feat_dim": FEAT_DIM, "embed_dim": EMBED_DIM, "pooling_func": "ASTP"}}),
    "ecapa_c1024_tstp_emb_bn": (lambda: tiny_ecapa(False, "TSTP", True), {"model": "ECAPA_TDNN_c1024", "model_args": {
        "feat_dim": FEAT_DIM, "embed_dim": EMBED_DIM, "pooling_func": "TSTP", "emb_bn": True}}),
    "campplus": (tiny_campplus, {"model": "CAMPPlus", "model_args": {
        "feat_dim": FEAT_DIM, "embed_dim": EMBED_DIM, "pooling_func": "TSTP", "growth_rate": 2, "bn_size": 2,
        "init_channels": 8}}),
}
# Full-size published models (examples/voxceleb/v2/conf/*.yaml), shapes only; and CAM++ with ASTP, whose
# state_dict holds the pooling twice (``pool`` and ``xvector.stats``).
PUBLISHED = {
    "CAMPPlus+ASTP": (lambda: campplus.CAMPPlus(feat_dim=80, embed_dim=512, pooling_func="ASTP"),
                      {"feat_dim": 80, "embed_dim": 512, "pooling_func": "ASTP"}),
    "ResNet34": (lambda: resnet.ResNet34(feat_dim=80, embed_dim=256, pooling_func="TSTP", two_emb_layer=False),
                 {"feat_dim": 80, "embed_dim": 256, "pooling_func": "TSTP", "two_emb_layer": False}),
    "ResNet293": (lambda: resnet.ResNet293(feat_dim=80, embed_dim=256, pooling_func="TSTP", two_emb_layer=False),
                  {"feat_dim": 80, "embed_dim": 256, "pooling_func": "TSTP", "two_emb_layer": False}),
    "ECAPA_TDNN_GLOB_c512": (lambda: ecapa_tdnn.ECAPA_TDNN_GLOB_c512(feat_dim=80, embed_dim=192, pooling_func="ASTP"),
                             {"feat_dim": 80, "embed_dim": 192, "pooling_func": "ASTP"}),
    "ECAPA_TDNN_GLOB_c1024": (lambda: ecapa_tdnn.ECAPA_TDNN_GLOB_c1024(feat_dim=80, embed_dim=192,
                                                                       pooling_func="ASTP"),
                              {"feat_dim": 80, "embed_dim": 192, "pooling_func": "ASTP"}),
    "CAMPPlus": (lambda: campplus.CAMPPlus(feat_dim=80, embed_dim=512, pooling_func="TSTP"),
                 {"feat_dim": 80, "embed_dim": 512, "pooling_func": "TSTP"}),
}

torch.manual_seed(0)
feats = {"long": torch.randn(2, 250, FEAT_DIM).half().float(), "short": torch.randn(1, 40, FEAT_DIM).half().float()}
arrays: dict[str, np.ndarray] = {f"feats_{name}": batch.half().numpy() for name, batch in feats.items()}
for case, (build, config) in CASES.items():
    torch.manual_seed(1)
    model = build()
    randomise_batch_norms(model)
    model.add_module("projection", projections.ArcMarginProduct(EMBED_DIM, CLASSES, scale=32.0, margin=0.0))
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    model.eval()
    arrays[f"{case}/config"] = np.array(json.dumps(config))
    state = model.state_dict()
    assert all(t.is_floating_point() or t.abs().max() <= 2048 for t in state.values())  # ints exact in float16
    arrays[f"{case}/keys"] = np.array(json.dumps([[key, list(t.shape), str(t.dtype).removeprefix("torch.")]
                                                  for key, t in state.items()]))
    arrays[f"{case}/state"] = np.concatenate([t.reshape(-1).half().numpy() for t in state.values()])
    with torch.no_grad():
        for name, batch in feats.items():
            outputs = model(batch)
            arrays[f"{case}/{name}"] = (outputs[-1] if isinstance(outputs, tuple) else outputs).numpy()
    print(case, sum(t.numel() for t in model.state_dict().values()), "values,",
          "embedding max", float(np.abs(arrays[f"{case}/long"]).max()))
layouts = {}
for name, (build, model_args) in PUBLISHED.items():
    model = build()
    layouts[name] = {"model": name.split("+")[0], "model_args": model_args,
                     "parameters": sum(p.numel() for p in model.parameters()),
                     "keys": {key: list(tensor.shape) for key, tensor in model.state_dict().items()}}
arrays["published_layouts"] = np.array(json.dumps(layouts))
arrays["wespeaker_commit"] = np.array(commit)
np.savez_compressed(out, **arrays)
print(out, out.stat().st_size, "bytes")
