"""Issue 22: the step machinery every variant shares (baselines/primitives/engine.py) and the
accelerator facts the harness reads (bench/accelerator.py). CUDA paths skip on CPU."""

import pytest
import torch

from baselines.primitives.engine import CUDA_LENGTH_MULTIPLE, adam, bucket_width, compact_lstms
from bench.accelerator import attention_kernels, bf16_peak_flops, model_flops_utilisation

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_bucket_width_rounds_up_on_cuda_only():
    assert CUDA_LENGTH_MULTIPLE == 16
    assert [bucket_width(w, CUDA) for w in (1, 16, 17, 31, 33)] == [16, 16, 32, 32, 48]
    assert bucket_width(33, CUDA, limit=40) == 40  # never past the encoded width
    assert [bucket_width(w, CPU) for w in (1, 17, 33)] == [1, 17, 33]  # CPU: no padding


def test_padding_to_a_bucket_changes_no_counted_log_prob(coco):
    """Right padding is invisible to causal attention, so a batch padded to its bucket scores
    its counted positions exactly as the trimmed batch does (here forced on a CPU)."""
    from baselines.primitives import hf

    tokenizer = hf.train_bpe_tokenizer(coco.train_text()[:300], 300)
    eos = tokenizer.eos_token_id
    torch.manual_seed(0)
    model = hf.build_gpt2(len(tokenizer), 1, 32, 2, 128, 0.0, eos).eval()
    batch = hf.encode_texts(tokenizer, coco.train_text()[:12], eos, eos).trimmed()
    width = batch.inputs.shape[1]
    pad = bucket_width(width, CUDA) + 16 - width
    padded = hf.TokenBatch(torch.nn.functional.pad(batch.inputs, (0, pad), value=eos),
                           torch.nn.functional.pad(batch.targets, (0, pad), value=eos),
                           torch.nn.functional.pad(batch.mask, (0, pad), value=False))
    with torch.no_grad():
        trimmed_lp = hf.token_log_probs(model, batch)
        padded_lp = hf.token_log_probs(model, padded)
    torch.testing.assert_close(padded_lp[:, :width], trimmed_lp, rtol=0, atol=1e-5)
    assert float(padded_lp[:, width:].abs().sum()) == 0.0  # padding is never counted


def test_optimisers_are_plain_on_cpu_and_keep_their_settings():
    weight = torch.nn.Parameter(torch.zeros(3))
    plain = adam([weight], 1e-3, CPU)
    assert type(plain) is torch.optim.Adam and not plain.defaults.get("fused")
    assert plain.defaults["weight_decay"] == 0.0
    decoupled = adam([weight], 1e-3, CPU, weight_decay=0.01, decoupled=True)
    assert type(decoupled) is torch.optim.AdamW and decoupled.defaults["weight_decay"] == 0.01


@needs_cuda
def test_optimisers_are_fused_and_lstms_compact_on_cuda():
    lstm = torch.nn.LSTM(4, 8).to(CUDA)
    optimizer = adam(lstm.parameters(), 1e-3, CUDA, decoupled=True)
    assert optimizer.defaults["fused"] is True
    import copy
    import warnings

    compacted = compact_lstms(copy.deepcopy(lstm))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compacted(torch.randn(3, 2, 4, device=CUDA))
    assert not [w for w in caught if "contiguous chunk" in str(w.message)]


def test_mfu_against_the_datasheet_peak():
    # 494.7 TFLOP counted in one device-second on an H200 (989.4 TFLOP/s dense bf16): 50%.
    assert bf16_peak_flops(CUDA, "NVIDIA H200") == 989.4e12
    assert model_flops_utilisation(494.7e12, 1.0, CUDA, "NVIDIA H200") == pytest.approx(0.5)
    assert model_flops_utilisation(75.6e12, 1.0, CUDA, "NVIDIA H100 PCIe") == pytest.approx(0.1)
    assert bf16_peak_flops(CUDA, "NVIDIA H100 80GB HBM3") == 989.4e12
    assert model_flops_utilisation(1e12, 1.0, CUDA, "Some Future GPU") is None
    assert model_flops_utilisation(1e12, 1.0, CPU) is None


def test_attention_kernels_is_a_no_op_off_cuda():
    with attention_kernels(CPU):
        query = torch.randn(1, 2, 4, 8)
        out = torch.nn.functional.scaled_dot_product_attention(query, query, query,
                                                               is_causal=True)
    assert out.shape == (1, 2, 4, 8)
