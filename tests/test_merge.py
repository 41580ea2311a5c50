"""Model soups (mm_assets/mixing/merge.py): every tensor key kept, frozen and integer tensors
copied and checked, exact sums so a soup's bytes depend on its members only, Gray-code order."""

from __future__ import annotations

import hashlib
import itertools

import pytest
import torch
from safetensors.torch import load_file, save_model

from mm_assets.mixing.merge import (
    MergeError,
    RunningSoup,
    gray_code_subsets,
    merge_from_scratch,
    merge_plan,
    soups_in_gray_order,
)


class TinyVLM(torch.nn.Module):
    """A frozen tower, tied input/output embeddings, a persistent integer buffer, batch norm."""

    def __init__(self):
        super().__init__()
        self.tower = torch.nn.Linear(6, 4)
        self.embed = torch.nn.Embedding(10, 4)
        self.norm = torch.nn.BatchNorm1d(4)
        self.head = torch.nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight                     # tied
        self.register_buffer("position_ids", torch.arange(7))


def _experts(k: int, tmp_path) -> list[dict[str, torch.Tensor]]:
    """k experts as training leaves them: the same frozen tower and buffers, their own weights,
    written with safetensors (which stores tied tensors once) and read back."""
    torch.manual_seed(0)
    start = TinyVLM()
    out = []
    for i in range(k):
        m = TinyVLM()
        m.load_state_dict(start.state_dict())
        with torch.no_grad():
            for name, p in m.named_parameters():
                if not name.startswith("tower."):
                    p.add_(torch.randn_like(p) * 0.1 * (i + 1))
            m.norm.running_mean.add_(float(i))
            m.norm.num_batches_tracked.fill_(5)
        save_model(m, str(tmp_path / f"e{i}.safetensors"))
        out.append(load_file(str(tmp_path / f"e{i}.safetensors")))
    return out


def _frozen(key: str) -> bool:
    return key.startswith("tower.")


def _bytes(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_a_soup_keeps_every_key_copies_frozen_and_integer_tensors_and_loads_strictly(tmp_path):
    experts = _experts(3, tmp_path)
    plan = merge_plan(experts[0], frozen=_frozen)
    assert set(plan.verbatim) == {"tower.weight", "tower.bias", "position_ids", "norm.num_batches_tracked"}
    soup = merge_from_scratch(plan, experts.__getitem__, [0, 1, 2])
    assert set(soup) == set(experts[0])
    for key in plan.verbatim:
        assert torch.equal(soup[key], experts[0][key]) and soup[key].dtype == experts[0][key].dtype
    for key in plan.averaged:
        mean = torch.stack([e[key].double() for e in experts]).mean(0).float()
        assert torch.allclose(soup[key], mean, atol=1e-7), key
    model = TinyVLM()
    missing, unexpected = model.load_state_dict(soup, strict=False)
    # safetensors stores the tied pair once; loading fills both, so the soup stays tied
    assert unexpected == [] and set(missing) <= {"head.weight", "embed.weight"}
    assert model.head.weight is model.embed.weight


def test_a_tied_pair_kept_as_two_keys_merges_to_equal_tensors(tmp_path):
    torch.manual_seed(1)
    states = []
    for i in range(2):
        m = TinyVLM()
        with torch.no_grad():
            m.embed.weight.mul_(i + 1)
        states.append({k: v.clone() for k, v in m.state_dict().items()})   # both keys of the pair
    states[1].update({k: states[0][k] for k in states[0] if k.startswith("tower.")})
    plan = merge_plan(states[0], frozen=_frozen)
    soup = merge_from_scratch(plan, states.__getitem__, [0, 1])
    assert set(soup) == set(states[0])
    assert torch.equal(soup["head.weight"], soup["embed.weight"])
    TinyVLM().load_state_dict(soup, strict=True)


def test_experts_whose_frozen_tensors_differ_are_refused_by_name(tmp_path):
    experts = _experts(2, tmp_path)
    experts[1] = dict(experts[1])
    experts[1]["tower.weight"] = experts[1]["tower.weight"] + 1e-6
    plan = merge_plan(experts[0], frozen=_frozen)
    with pytest.raises(MergeError, match=r"expert 1: tensor tower.weight is frozen"):
        merge_from_scratch(plan, experts.__getitem__, [0, 1])


def test_experts_with_a_missing_or_reshaped_tensor_are_refused_by_name(tmp_path):
    experts = _experts(2, tmp_path)
    plan = merge_plan(experts[0], frozen=_frozen)
    dropped = {k: v for k, v in experts[1].items() if k != "tower.bias"}
    with pytest.raises(MergeError, match=r"missing \['tower.bias'\]"):
        merge_from_scratch(plan, [experts[0], dropped].__getitem__, [0, 1])
    reshaped = dict(experts[1], **{"norm.weight": torch.ones(5)})
    with pytest.raises(MergeError, match=r"norm.weight is torch.float32\[5\]"):
        RunningSoup(plan, [experts[0], reshaped].__getitem__).add(1)


def test_gray_code_visits_every_subset_once_changing_one_expert_each_time():
    order = list(gray_code_subsets(5))
    subsets = [s for _, _, s in order]
    assert len(subsets) == 31 == len(set(subsets)) and frozenset() not in subsets
    previous = frozenset()
    for expert, added, subset in order:
        assert previous ^ subset == {expert} and (expert in subset) == added
        previous = subset


def _wide_range_experts(k: int) -> list[dict[str, torch.Tensor]]:
    """Weights of ordinary size, and one tensor whose values span ~2^-60 .. 2^40 so that its
    float64 running sum is not exact (the double-double path)."""
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(k):
        wide = torch.randn(64, generator=g) * torch.pow(2.0, torch.randint(-60, 40, (64,), generator=g).float())
        out.append({"w": torch.randn(8, 8, generator=g), "b": torch.randn(8, generator=g).to(torch.bfloat16),
                    "wide": wide.float(), "steps": torch.tensor([3])})
    return out


def test_gray_code_soups_are_byte_identical_to_merging_each_subset_from_scratch():
    experts = _wide_range_experts(5)
    plan = merge_plan(experts[0])
    loads = []

    def load(i):
        loads.append(i)
        return experts[i]

    gray = {subset: _bytes(soup) for subset, soup in soups_in_gray_order(plan, load, 5)}
    walk_loads = len(loads)
    assert len(gray) == 31
    for subset, digest in gray.items():
        assert _bytes(merge_from_scratch(plan, experts.__getitem__, subset)) == digest, sorted(subset)
        again = merge_from_scratch(plan, experts.__getitem__, sorted(subset, reverse=True))
        assert _bytes(again) == digest                          # same subset => same bytes
    # one expert read per soup, plus the re-sums of the tensor whose float64 sum was not exact
    assert walk_loads < 31 + sum(len(s) for s in gray)
    # the uniform soup is the mean, rounded once
    everyone = merge_from_scratch(plan, experts.__getitem__, range(5))
    assert torch.allclose(everyone["w"], torch.stack([e["w"] for e in experts]).double().mean(0).float())


def test_a_running_soup_returns_to_exactly_an_expert_after_adding_and_removing_others():
    experts = _wide_range_experts(4)
    plan = merge_plan(experts[0])
    running = RunningSoup(plan, experts.__getitem__)
    running.add(2)
    alone = _bytes(running.soup())
    for i in (0, 3, 1):
        running.add(i)
    for i in (3, 1, 0):
        running.remove(i)
    assert running.members == {2} and _bytes(running.soup()) == alone
    assert all(torch.equal(running.soup()[k], experts[2][k]) for k in experts[2])
    with pytest.raises(MergeError, match="already in the soup"):
        running.add(2)


def test_weighted_soups_are_exact_and_a_one_hot_weight_returns_the_expert():
    experts = _wide_range_experts(3)
    plan = merge_plan(experts[0])
    one_hot = merge_from_scratch(plan, experts.__getitem__, [0, 1, 2], weights={0: 0.0, 1: 1.0, 2: 0.0})
    assert all(torch.equal(one_hot[k], experts[1][k]) for k in experts[1])
    weights = {0: 0.5, 1: 0.3, 2: 0.2}
    a = merge_from_scratch(plan, experts.__getitem__, [0, 1, 2], weights=weights)
    b = merge_from_scratch(plan, experts.__getitem__, [2, 0, 1], weights=weights)
    assert _bytes(a) == _bytes(b)
    expected = sum(float(torch.tensor(w, dtype=torch.float32)) * experts[i]["w"].double() for i, w in weights.items())
    assert torch.equal(a["w"], expected.float())


@pytest.mark.parametrize("k", [1, 3])
def test_every_subset_soup_of_k_experts_matches_itertools(k):
    subsets = {s for _, _, s in gray_code_subsets(k)}
    assert subsets == {frozenset(c) for n in range(1, k + 1) for c in itertools.combinations(range(k), n)}


def test_sums_stay_exact_when_values_cancel_across_sixty_binary_orders():
    # float64 alone: 2^60 + 1 rounds to 2^60, and the mean would come out 0 instead of 1/3
    experts = [{"w": torch.tensor([v], dtype=torch.float32)} for v in (2.0 ** 60, 1.0, -(2.0 ** 60))]
    plan = merge_plan(experts[0])
    expected = torch.tensor([1 / 3], dtype=torch.float32)
    assert torch.equal(merge_from_scratch(plan, experts.__getitem__, [0, 1, 2])["w"], expected)
    soups = dict(soups_in_gray_order(plan, experts.__getitem__, 3))
    assert torch.equal(soups[frozenset({0, 1, 2})]["w"], expected)
    assert torch.equal(soups[frozenset({0, 2})]["w"], torch.zeros(1))
