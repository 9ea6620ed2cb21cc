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
    from baselines.primitives import hf, hf_models, hf_tokenizers

    tokenizer = hf_tokenizers.train_bpe_tokenizer(coco.train_text()[:300], 300)
    eos = tokenizer.eos_token_id
    torch.manual_seed(0)
    model = hf_models.build_gpt2(len(tokenizer), 1, 32, 2, 128, 0.0, eos).eval()
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


# -- token-budgeted batches -------------------------------------------------------------------


def test_token_budgeted_batches_by_hand():
    """Lengths 1..10 in a seeded order, 12 positions a batch: each batch is the longest prefix
    of the epoch's order whose rows x longest fits (checked against the order by hand), the
    epoch's sentences each once, and a resumed sampler draws the same batches."""
    from baselines.primitives.sequences import RandomBatches

    lengths = torch.arange(1, 11)
    sampler = RandomBatches(10, 64, seed=3, tokens_per_batch=12, lengths=lengths)
    order = sampler._order.tolist()
    batches, position = [], 0
    while position < 10:
        count = 1
        while (position + count < 10 and (count + 1) * max(
                lengths[order[position : position + count + 1]].tolist()) <= 12):
            count += 1
        batches.append(order[position : position + count])
        position += count
    drawn = [sampler.next_indices().tolist() for _ in batches]
    assert drawn == batches
    assert sorted(i for batch in drawn for i in batch) == list(range(10))
    for batch in drawn:
        assert len(batch) == 1 or len(batch) * max(lengths[batch].tolist()) <= 12
    state = sampler.state_dict()
    after = [sampler.next_indices().tolist() for _ in range(4)]  # into the next epoch
    resumed = RandomBatches(10, 64, seed=99, tokens_per_batch=12, lengths=lengths)
    resumed.load_state_dict(state)
    assert [resumed.next_indices().tolist() for _ in range(4)] == after


def test_token_budgets_need_lengths():
    from baselines.primitives.sequences import RandomBatches

    with pytest.raises(ValueError, match="one length per sentence"):
        RandomBatches(10, 4, seed=0, tokens_per_batch=8)


def test_gpt2_mle_counts_its_tokens_on_the_host(coco):
    """The step's token count and batch width come from lengths kept on the host; they equal
    the tokenizer's own counts (BPE tokens + EOS) of the sentences drawn, and a token-budgeted
    step stays inside its budget of positions."""
    from baselines.gpt2_mle import GPT2MLE
    from bench.config import build_config
    from bench.corpora import Corpus

    corpus = Corpus("coco_300", coco.train[:300], coco.test[:50], coco.tokenization)
    config = build_config(GPT2MLE.Config, {"n_layer": 1, "n_embd": 32, "n_head": 2,
                                           "bpe_vocab_size": 300, "tokens_per_batch": 200})
    variant = GPT2MLE(config, corpus, CPU, seed=0)
    drawn = []
    original = variant.batches.next_indices
    variant.batches.next_indices = lambda: drawn.append(original()) or drawn[-1]
    for _ in range(3):
        report = variant.mle_step()
        texts = [variant.corpus.train_text()[i] for i in drawn[-1].tolist()]
        by_tokenizer = [len(ids) + 1 for ids in variant.tokenizer(
            texts, add_special_tokens=False)["input_ids"]]
        assert report.tokens == sum(by_tokenizer)
        assert len(by_tokenizer) * max(by_tokenizer) <= 200
        assert isinstance(report.nll, torch.Tensor) and report.nll.requires_grad is False


# -- step values read in batches --------------------------------------------------------------


def test_pending_step_values_are_the_items_in_step_order():
    from bench.step_values import PendingSteps
    from bench.variant import StepReport

    pending = PendingSteps()
    losses = [torch.tensor(v, dtype=torch.float32) for v in (2.5, 1.0 / 3.0, 7.25)]
    for step, loss in enumerate(losses, start=1):
        pending.add(step, StepReport(tokens=10, logs={"loss": loss, "phase": 1.0,
                                                      "twice": loss * 2}, nll=loss,
                                     nll_vocab_size=5))
    pending.add(4, StepReport(tokens=10, logs={"d": 0.5}))
    values = pending.drain()
    assert len(pending) == 0
    assert [v.step for v in values] == [1, 2, 3, 4]
    for value, loss in zip(values, losses):
        assert value.logs == {"loss": loss.item(), "phase": 1.0, "twice": (loss * 2).item()}
        assert value.nll == loss.item() and value.nll_vocab_size == 5
    assert values[3].logs == {"d": 0.5} and values[3].nll is None


def test_a_divergence_found_late_names_its_own_step():
    """Read at a sync point after later steps ran, a non-finite loss at step 2 still ends the
    run as diverged at step 2 (not at the step the harness read it)."""
    from bench.errors import Diverged
    from bench.runner import TrainOutcome, _read_steps
    from bench.step_values import PendingSteps
    from bench.variant import StepReport

    pending = PendingSteps()
    for step, loss in enumerate((3.0, float("nan"), 2.0), start=1):
        pending.add(step, StepReport(tokens=1, logs={"loss": torch.tensor(loss)},
                                     nll=torch.tensor(loss), nll_vocab_size=100))
    with pytest.raises(Diverged) as caught:
        _read_steps(pending, TrainOutcome())
    assert caught.value.step == 2 and "nan" in caught.value.reason
    outcome = TrainOutcome()
    pending.add(4, StepReport(tokens=1, logs={"loss": torch.tensor(1.5)}))
    _read_steps(pending, outcome)
    assert outcome.last_logs == {"loss": 1.5}


# -- compiled training forward ----------------------------------------------------------------


def test_a_compiled_gpt2_trains_as_the_eager_one(coco, monkeypatch):
    """gpt2_mle with compile=true: the same losses and weights as eager after two steps (to
    float rounding), while its generator keeps eager forward and state_dict keys. Compiled
    with the aot_eager backend here (the captured graph, no C++ build); CUDA uses inductor."""
    pytest.importorskip("torch._dynamo")
    from baselines.gpt2_mle import GPT2MLE
    from baselines.primitives import engine
    from bench.config import build_config
    from bench.corpora import Corpus

    monkeypatch.setattr(engine, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    corpus = Corpus("coco_200", coco.train[:200], coco.test[:20], coco.tokenization)
    size = {"n_layer": 1, "n_embd": 32, "n_head": 2, "bpe_vocab_size": 300, "dropout": 0.0,
            "batch_size": 16}
    eager = GPT2MLE(build_config(GPT2MLE.Config, size), corpus, CPU, seed=0)
    fast = GPT2MLE(build_config(GPT2MLE.Config, {**size, "compile": True}), corpus, CPU,
                   seed=0)
    assert eager.train_body is None
    assert isinstance(fast.train_body, torch._dynamo.eval_frame.OptimizedModule)
    for _ in range(2):
        assert torch.allclose(eager.mle_step().nll, fast.mle_step().nll, atol=1e-6)
    assert list(fast.generator.state_dict()) == list(eager.generator.state_dict())
    for (name, a), b in zip(eager.generator.named_parameters(), fast.generator.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name


@needs_cuda
def test_host_tensors_reach_the_gpu_without_a_wait():
    """to_device copies through pinned memory without synchronising (CUDA's sync debug mode
    would raise), and what arrives is the host tensor, even when the host copy is dropped
    and its pinned block reused at once."""
    from baselines.primitives.engine import to_device

    cuda = torch.device("cuda")
    expected = [torch.arange(i, i + 1000) for i in range(20)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        arrived = [to_device(host.clone(), cuda) for host in expected]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.equal(a.cpu(), e) for a, e in zip(arrived, expected))
    assert to_device(torch.ones(3), torch.device("cpu")).device.type == "cpu"
