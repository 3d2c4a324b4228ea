"""OrthrusWorker: one SGLang decode step = draft -> verify -> accept -> commit, for a whole batch.

Draft and verify run inside ONE target-model forward in TARGET_VERIFY (see models/orthrus.py);
this worker prepares the block, calls that forward, accepts, and hands SGLang's spec-v2
scheduler the committed tokens in its spec-v2 result layout (step_info.py: our verify input and
the draft input it relays, so overlap scheduling, KV over-allocation and radix bookkeeping are
SGLang's own). Prefill is the target worker's plain AR extend.
"""

from __future__ import annotations

import logging
import secrets

import torch

from .. import step
from ..accept import DraftDist, RowSampling, greedy_accept
from ..block_policy import BlockPolicy, CyclingBlockPolicy
from ..sampling import candidate_bound
from . import compat, step_buffers, verify_logits
from .accept_graphs import AcceptGraphs
from .block_states import BlockStates
from .metrics import OrthrusMetrics
from .options import block_policy, block_sizes, simulated_accept_rate, use_block_attention
from .pinned_acceptance import geometric_accepted, pin_commit_length
from .step_buffers import StepBuffers
from .step_clock import StepClock
from .step_info import OrthrusDraftInput, OrthrusVerifyInput

logger = logging.getLogger(__name__)


class _NoDraftWorker:
    """Stands where other algorithms keep a draft TpModelWorker: ORTHRUS has no draft model or KV.

    SGLang reads ``draft_worker.draft_runner.token_to_kv_pool`` (kv_cache_builder.get_draft_kv_pool)
    and the graph/weight bookkeeping below for every algorithm except NGRAM.
    """

    class _Runner:
        token_to_kv_pool = None

    draft_runner = _Runner()
    draft_runners: list = []
    graph_memory_usage: dict = {}
    graph_time_usage: dict = {}
    weight_load_time = 0.0
    preloaded_weights_bytes = 0  # read by SGLang 0.5.23+

    def alloc_memory_pool(self, **kwargs):
        pass

    def init_attention_backends(self):
        pass

    def init_cuda_graphs(self):
        pass


class OrthrusWorker(compat.BaseSpecWorker):
    # SGLang's scheduler builds the worker with keyword arguments (compat.py: 0.5.23 no longer passes ps).
    def __init__(self, server_args, gpu_id, nccl_port, target_worker, ps=None):
        super().__init__()
        self.server_args = server_args
        settings = compat.effective_server_args(server_args)
        self.ps = ps
        self._target_worker = target_worker
        self._draft_worker = _NoDraftWorker()
        self.model_runner = target_worker.model_runner
        self.model = self.model_runner.model
        self.device = self.model_runner.device
        # The largest block size: SGLang reserves KV and captures its startup graphs for it. Each step
        # takes the size the policy picks (ORTHRUS_BLOCK_POLICY; fixed: always this one).
        self.block_size = int(settings.speculative_num_draft_tokens)
        sizes = block_sizes(self.block_size)
        self.block_policy = CyclingBlockPolicy(sizes) if block_policy() == "cycle" else BlockPolicy(sizes)
        self.block_states = BlockStates(self.model_runner, self.block_size)
        self.step_clock = StepClock(self.device) if self.block_policy.is_adaptive else None
        config = self.model_runner.model_config.hf_config
        self.mask_token_id = int(config.mask_token_id)
        if type(self.model).__name__ != "OrthrusLM":
            raise ValueError(f"ORTHRUS needs an Orthrus checkpoint (architecture OrthrusLM), got "
                             f"{type(self.model).__name__}: convert it with `orthrus convert`")
        # Before any CUDA graph is captured: the graphs hold these buffers' addresses.
        # --speculative-use-rejection-sampling, as for EAGLE: sampled requests draft from the diffusion
        # distribution q (inside the captured step) and verify with full rejection sampling. Without
        # it drafts stay the diffusion argmax and sampled requests use target-only rejection
        # sampling. Both are exact.
        self.buffers = StepBuffers.allocate(
            self._max_batch_size(settings), self.block_size, int(config.vocab_size), self.device,
            sampled_drafts=bool(getattr(settings, "speculative_use_rejection_sampling", False)))
        step_buffers.register(self.model_runner, self.buffers)  # for the capture-time verify input (hooks.py)
        self._offsets = torch.arange(self.block_size, device=self.device)
        self._out_slot = 0  # ring of two result buffers: the scheduler reads one while we fill the other
        self._out_bufs: list[dict[str, torch.Tensor]] = [{}, {}]
        self.metrics = OrthrusMetrics.create(settings, self.block_size)
        self.accept_graphs = AcceptGraphs(self.device)  # ORTHRUS_ACCEPT_GRAPHS=1 (accept_graphs.py)
        self.simulated_accept_rate = simulated_accept_rate()  # benchmarks only (pinned_acceptance.py)
        # block_attention serves both passes of a step (models/orthrus.py), so the attention backend is
        # not planned for it: flashinfer's plan would make the host wait for the GPU every step.
        self.plan_attention = not use_block_attention()
        if self.simulated_accept_rate is not None and compat.simulated_commit_len(self.block_size) is not None:
            raise ValueError("set ORTHRUS_SIMULATE_ACCEPT_RATE or SGLANG_SIMULATE_ACC_LEN, not both")
        logger.info("ORTHRUS worker ready: block size %d (%s policy, sizes %s), mask token %d", self.block_size,
                    block_policy(), ",".join(map(str, sizes)), self.mask_token_id)

    def _max_batch_size(self, settings) -> int:
        sizes = [settings.max_running_requests or 0, getattr(settings, "cuda_graph_max_bs_decode", None) or 0]
        runner = getattr(self.model_runner, "decode_cuda_graph_runner", None)
        sizes += list(getattr(runner, "capture_bs", None) or [])
        sizes.append(compat.decode_graph_max_batch_size())
        return max(max(sizes), 1) + 16  # padding slack for graph replay

    # The scheduler treats the spec worker as its tp worker (memory pool, weight updates, ...):
    # everything ORTHRUS does not change comes from the target worker.
    def __getattr__(self, name):
        if name == "_target_worker":
            raise AttributeError(name)
        return getattr(self._target_worker, name)

    def init_cuda_graphs(self):
        """After SGLang captured the largest block size's graphs: the other sizes' (block_states.py)."""
        super().init_cuda_graphs()
        built = self.block_states.build(self.block_policy.candidates)
        if built != self.block_policy.candidates:
            self.block_policy = type(self.block_policy)(built)

    def on_verify_complete_cpu(self, num_correct_drafts_per_req: list[int], batch_size: int = 0) -> None:
        """SGLang hands back each decode step's accepted-draft counts, on the host, in launch order."""
        # Not adaptive: every step ran the policy's one size (the largest, or ORTHRUS_BLOCK_SIZES's only one).
        block_size, seconds = self.block_policy.candidates[-1], None
        if self.step_clock is not None:
            done = self.step_clock.finish(batch_size or len(num_correct_drafts_per_req))
            if done is not None:
                block_size, seconds = done
                self.block_policy.observe(len(num_correct_drafts_per_req), block_size, num_correct_drafts_per_req,
                                          seconds)
        if self.metrics is not None:
            self.metrics.observe(num_correct_drafts_per_req, block_size)

    # ---- one scheduler iteration ---------------------------------------------------------
    def forward_batch_generation(self, batch, on_publish=None, grammar_barrier=None, pp_proxy_tensors=None):
        # pp_proxy_tensors: passed by 0.5.23's non-overlap path; always None (--pp-size > 1 is refused).
        if batch.forward_mode.is_extend() or batch.is_extend_in_batch:
            return self._prefill(batch, on_publish)
        if batch.spec_info is None:
            batch.spec_info = OrthrusDraftInput.empty(self.device)
        if batch.forward_mode.is_idle():
            return self._idle(on_publish)
        return self._decode(batch, on_publish, grammar_barrier)

    def _prefill(self, batch, on_publish):
        if batch.sampling_info is not None:
            # The first token: SGLang's sampler draws it, keyed by the request's seed (hooks.seeded_sample).
            batch.sampling_info.orthrus_rows = self.row_sampling(batch)
        out = self.target_worker.forward_batch_generation(batch)
        out.new_seq_lens = batch.seq_lens  # spec-v2 convention: the committed length L, first token not in it
        if on_publish is not None:
            on_publish(out.new_seq_lens)
        out.next_draft_input = OrthrusDraftInput(bonus_tokens=out.next_token_ids, new_seq_lens=batch.seq_lens)
        return out

    def _idle(self, on_publish):
        empty = torch.empty((0,), dtype=torch.int64, device=self.device)
        draft_input = OrthrusDraftInput.empty(self.device)
        if on_publish is not None:
            on_publish(draft_input.new_seq_lens)
        return compat.GenerationBatchResult(logits_output=None, next_token_ids=empty,
                                            accept_lens=torch.empty((0,), dtype=torch.int32, device=self.device),
                                            next_draft_input=draft_input, can_run_cuda_graph=False,
                                            speculative_num_draft_tokens=self.block_size, new_seq_lens=empty)

    def _decode(self, batch, on_publish, grammar_barrier):
        if batch.seq_lens.is_cuda:  # produced on another stream by the previous overlap iteration
            batch.seq_lens.record_stream(torch.cuda.current_stream())
        bs = len(batch.seq_lens)
        B = self.block_policy.choose(bs)  # from earlier steps only: lossless whatever it picks
        timed = self.step_clock.start(bs, B) if self.step_clock is not None else None
        with self.block_states.use(B):
            result = self._decode_block(batch, on_publish, grammar_barrier, B)
        if timed is not None:
            self.step_clock.stop(timed)
        return result

    def _decode_block(self, batch, on_publish, grammar_barrier, B: int):
        """One step of block size B (B = 1: a plain AR step, no draft pass)."""
        bs = len(batch.seq_lens)
        prefix_lens = batch.seq_lens  # L: committed KV length; the block sits at L..L+B-1
        block_ids, positions, cache_locs = self.prepare_block(batch, batch.spec_info.bonus_tokens, B)

        rows = self.row_sampling(batch)
        sampling = self.buffers.sampling
        if sampling is not None:  # the model draws sampled drafts inside its forward
            sampling.load(rows, bs)
        # draft + verify: one TARGET_VERIFY forward over the block (models/orthrus.py)
        logits_output, can_run_graph = self._forward_block(batch, block_ids, positions, cache_locs)
        draft_dist = sampling.dist(bs, B) if sampling is not None and rows is not None and B > 1 else None
        drafts = self.buffers.drafts(bs, B)
        candidates = torch.cat([block_ids[:, :1], drafts], dim=1)  # [bs, B]: t, d_1..d_{B-1}

        logits = logits_output.next_token_logits  # [bs*B, V]
        if batch.has_grammar:  # drafts are unconstrained; every verify row is masked before accept
            tree = compat.GrammarTree.from_linear_chain(candidates)
            mask = compat.build_grammar_vocab_mask(reqs=batch.reqs, tree=tree, sampling_info=batch.sampling_info,
                                                   device=logits.device, barrier=grammar_barrier)
            if mask is not None:
                mask.apply(logits)
        verify_logits.apply_to_verify_rows(logits, batch.sampling_info, B)

        num_accepted, bonus, target_top1 = self.accept(batch, rows, drafts, logits.view(bs, B, -1), draft_dist,
                                                       inputs_fixed=can_run_graph)
        accept_len, commit_lens, out_bonus, out_tokens, new_seq_lens = self._result_buffers(bs, B)
        accept_len.copy_(num_accepted)
        out_bonus.copy_(bonus)
        # Row i = [accepted drafts..., bonus, stale...]: SGLang reads the first commit_lens[i] entries.
        _, lengths = step.commit(drafts, num_accepted, bonus, out=out_tokens)
        commit_lens.copy_(lengths)
        pinned = None  # a step without drafts (B = 1) commits its one token whatever a benchmark pins
        if B > 1:
            pinned = compat.simulated_commit_len(B)  # SGLang's pinned-acceptance benchmark switch
            if self.simulated_accept_rate is not None:  # ours: a geometric profile, per request
                pinned = geometric_accepted(self.simulated_accept_rate, bs, B, self.device) + 1
        if pinned is not None:
            if target_top1 is None:  # a sampled batch: only the pinned benchmark needs it
                target_top1 = logits.view(bs, B, -1).argmax(dim=-1)
            pin_commit_length(pinned, candidates=candidates, target_top1=target_top1,
                              real_drafts=compat.simulated_uses_real_drafts(), accept_len=accept_len,
                              commit_lens=commit_lens, bonus=out_bonus, out_tokens=out_tokens)
        torch.add(prefix_lens, commit_lens.to(prefix_lens.dtype), out=new_seq_lens)
        if on_publish is not None:
            on_publish(new_seq_lens)
        if batch.return_logprob:  # row i's token j came from verify logits row i*B + j
            compat.chain_verify_logprobs(batch, logits_output, out_tokens.reshape(-1), B)
        logits_output.hidden_states = None
        return compat.GenerationBatchResult(
            logits_output=logits_output, next_token_ids=out_tokens.reshape(-1), accept_lens=commit_lens,
            can_run_cuda_graph=can_run_graph, speculative_num_draft_tokens=B, new_seq_lens=new_seq_lens,
            next_draft_input=OrthrusDraftInput(bonus_tokens=out_bonus, new_seq_lens=new_seq_lens))

    def prepare_block(self, batch, last_tokens: torch.Tensor, block_size: int):
        """[t, MASK x (B-1)] per request, its positions L..L+B-1 and their KV slots (all [bs, B])."""
        block_ids = step.make_block(last_tokens, block_size, self.mask_token_id)
        positions = batch.seq_lens.to(torch.int64).unsqueeze(1) + self._offsets[:block_size]
        req_to_token = self.model_runner.req_to_token_pool.req_to_token
        cache_locs = req_to_token[batch.req_pool_indices.to(torch.int64).unsqueeze(1), positions]
        return block_ids, positions, cache_locs.to(torch.int64)

    def _forward_block(self, batch, block_ids, positions, cache_locs):
        bs, B = block_ids.shape
        verify_input = OrthrusVerifyInput(block_ids.reshape(-1), positions.reshape(-1), B, self.buffers)
        batch.out_cache_loc = cache_locs.reshape(-1)
        seq_lens_cpu, seq_lens_sum = batch.seq_lens_cpu, batch.seq_lens_sum
        if seq_lens_cpu is not None:  # host-side bound for attention planning: L + B
            batch.seq_lens_cpu = seq_lens_cpu + B
            batch.seq_lens_sum = int(batch.seq_lens_cpu.sum())
        forward_batch, can_run_graph = verify_input.prepare_for_verify(batch, self.target_worker,
                                                                       self.plan_attention)
        # prepare_for_verify already planned the attention (graph load_batch or eager init), or
        # block_attention needs none: without this mark the forward plans it every step.
        forward_batch.mark_forward_metadata_ready()
        batch.seq_lens_cpu, batch.seq_lens_sum = seq_lens_cpu, seq_lens_sum
        if not can_run_graph and compat.is_torch_native_backend(self.model_runner.attn_backend):
            # SGLang's CPU backend runs every extend-family mode as "prefix + new tokens" and reads
            # the total length from seq_lens; TARGET_VERIFY gives it the prefix only.
            forward_batch.extend_prefix_lens = forward_batch.seq_lens
            forward_batch.extend_seq_lens = torch.full_like(forward_batch.seq_lens, B)
            forward_batch.seq_lens = forward_batch.seq_lens + B
        result = self.target_worker.forward_batch_generation(batch=None, forward_batch=forward_batch, is_verify=True)
        return result.logits_output, result.can_run_cuda_graph

    def row_sampling(self, batch) -> RowSampling | None:
        """The batch's sampling as accept.RowSampling, from SGLang's SamplingBatchInfo and the requests;
        None when every request is greedy.

        Seeds: the request's sampling_seed, else a random one drawn once per request (kept on the Req).
        SGLang normalises greedy requests to top_k 1. No host sync: the host values come from batch.reqs."""
        info = batch.sampling_info
        if info is None or info.is_all_greedy:  # None = every row greedy: no tensors to build per step
            return None
        vocab = int(info.vocab_size)
        seeds = []
        for req in batch.reqs:
            seed = getattr(req, "_orthrus_seed", None)
            if seed is None:
                given = req.sampling_params.sampling_seed
                seed = int(given) if given is not None else secrets.randbits(62)
                req._orthrus_seed = seed
            seeds.append(seed)
        params = [req.sampling_params for req in batch.reqs]
        top_ks = info.top_ks.view(-1).to(torch.int64)
        return RowSampling(
            greedy=top_ks <= 1, temperature=info.temperatures.view(-1).float(), top_k=top_ks,
            top_p=info.top_ps.view(-1).float(), min_p=info.min_ps.view(-1).float(),
            seeds=_to_device(torch.tensor(seeds, dtype=torch.int64), self.device),
            bound=candidate_bound([p.top_k for p in params], [p.top_p for p in params], vocab))

    def accept(self, batch, rows: RowSampling | None, drafts: torch.Tensor, logits: torch.Tensor,
               draft_dist: DraftDist | None = None, inputs_fixed: bool = False):
        """(num_accepted [bs], bonus [bs], AR argmax [bs, B] or None) by accept.accept_block: greedy rows by
        prefix match; sampled rows by rejection sampling against q (sampled drafts) or target-only
        (greedy drafts). Exact for temperature, top_k, top_p and min_p. Sampled batches replay it
        from a CUDA graph when ORTHRUS_ACCEPT_GRAPHS=1 and inputs_fixed (the forward replayed one).
        A sampled batch does not need the argmax (None: only a pinned-acceptance benchmark asks for it)."""
        if rows is None:
            target_top1 = logits.argmax(dim=-1)
            num_accepted, bonus = greedy_accept(drafts, target_top1)
            return num_accepted, bonus, target_top1
        num_accepted, bonus = self.accept_graphs.accept(drafts, logits, rows, batch.seq_lens, draft_dist, inputs_fixed)
        return num_accepted, bonus, None

    def _result_buffers(self, bs: int, block_size: int):
        """Two sets of output tensors, alternated: SGLang copies one to the host while the next step runs.
        The tokens are [bs, B] rows packed at the start of one buffer: SGLang reads them with stride B."""
        bufs = self._out_bufs[self._out_slot]
        self._out_slot ^= 1
        if not bufs or bufs["accept_len"].shape[0] < bs:
            cap, dev = max(bs, 2 * (bufs["accept_len"].shape[0] if bufs else 0)), self.device
            bufs.update(accept_len=torch.empty(cap, dtype=torch.int64, device=dev),
                        commit_lens=torch.empty(cap, dtype=torch.int32, device=dev),
                        bonus=torch.empty(cap, dtype=torch.int64, device=dev),
                        out_tokens=torch.empty(cap * self.block_size, dtype=torch.int64, device=dev),
                        new_seq_lens=torch.empty(cap, dtype=torch.int64, device=dev))
        return (bufs["accept_len"][:bs], bufs["commit_lens"][:bs], bufs["bonus"][:bs],
                bufs["out_tokens"][: bs * block_size].view(bs, block_size), bufs["new_seq_lens"][:bs])


def _to_device(host: torch.Tensor, device) -> torch.Tensor:
    """Host -> device without blocking the host: a copy from pageable memory waits for the stream
    (everything queued before it), one from pinned memory does not."""
    if torch.device(device).type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)
