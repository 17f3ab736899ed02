"""actors/losses.py against hand-computed values (literals below were worked out on paper / a calculator)."""

from __future__ import annotations

import math

import pytest
import torch

from actors.learner import collate
from actors.losses import (
    LossConfig,
    correction_name,
    dapo_overlong,
    group_advantages,
    grpo_advantage,
    long2short,
    mgpo_weight,
    policy_loss,
    score,
    token_weights,
)
from actors.records import Rollout
from actors.train_engine import plan_micro_batches

# One group of 4: rewards [1, 0, 0, 0] -> mean 0.25, population std sqrt(0.25*0.75) = 0.4330127.
R = torch.tensor([1.0, 0.0, 0.0, 0.0])
G = ["p1"] * 4
LENS = torch.tensor([2, 3, 4, 5])


def adv(**kw) -> torch.Tensor:
    return group_advantages(R, G, LENS, LossConfig(**kw))[0]


def test_grpo_advantage_population_std():
    a = adv(mgpo_lambda=0.0)
    torch.testing.assert_close(a, torch.tensor([1.7320508, -0.5773503, -0.5773503, -0.5773503]),
                               atol=1e-5, rtol=0)


def test_drgrpo_no_std():
    a = adv(advantage="drgrpo", mgpo_lambda=0.0)
    torch.testing.assert_close(a, torch.tensor([0.75, -0.25, -0.25, -0.25]))


@pytest.mark.parametrize("lam,w", [(0.0, 1.0), (1.0, 0.8773827), (4.0, 0.5925926)])
def test_mgpo_scales_grpo(lam: float, w: float):
    # p_c = 1/4: D_ME = 0.25*ln(0.5) + 0.75*ln(1.5) = 0.1308120; w = exp(-lam * D_ME)
    a = adv(mgpo_lambda=lam)
    torch.testing.assert_close(a, w * torch.tensor([1.7320508, -0.5773503, -0.5773503, -0.5773503]),
                               atol=1e-5, rtol=0)


def test_mgpo_lambda_zero_is_grpo_exactly():
    a0, w0 = group_advantages(R, G, LENS, LossConfig(mgpo_lambda=0.0))
    assert torch.equal(w0, torch.ones(4))
    assert torch.equal(a0, grpo_advantage(R.double(), LENS, LossConfig()).float())


@pytest.mark.parametrize("k,w", [(1, 0.729), (2, 0.877), (4, 1.0)])
def test_mgpo_w_table(k: int, w: float):
    r = torch.tensor([1.0] * k + [0.0] * (8 - k))
    assert abs(mgpo_weight(r, 1.0).item() - w) < 1e-3


def test_zero_std_group_gives_zero_advantage():
    a, w = group_advantages(torch.ones(4), G, LENS, LossConfig())
    assert torch.equal(a, torch.zeros(4))
    assert abs(w[0].item() - 0.5) < 1e-6  # p_c = 1: D_ME = ln 2 (0 log 0 = 0), w = 0.5 at lambda = 1


def test_long2short_hand_values_and_zero_sum():
    r = torch.tensor([1.0, 1.0, 1.0, 0.0])
    out = long2short(r, torch.tensor([2, 4, 8, 5]), 0.2)
    # s = [1/2, 1/4, 1/8], mean 7/24, dev/max|dev| = [1, -0.2, -0.8]
    torch.testing.assert_close(out, torch.tensor([1.2, 0.96, 0.84, 0.0]))
    assert abs(out.mean().item() - r.mean().item()) < 1e-7
    assert torch.equal(long2short(r, torch.tensor([3, 3, 3, 5]), 0.2), r)  # all same length
    one = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert torch.equal(long2short(one, torch.tensor([2, 4, 8, 5]), 0.2), one)  # < 2 correct
    a = group_advantages(r, G, torch.tensor([2, 4, 8, 5]), LossConfig(long2short_lambda=0.2, mgpo_lambda=0))[0]
    assert a[0] > a[1] > a[2] > a[3]


# Policy-loss example: two responses (lengths 2 and 3), A = [+1, -1], pi_old = 1 (old_logp = 0),
# ratios seq0 [1.0, 1.5], seq1 [0.5, 1.0, 1.1]; clip 0.2 / 0.28:
#   seq0: [-1, max(-1.5, -1.28) = -1.28]            (token 2 clipped)
#   seq1: [max(0.5, 0.8) = 0.8, 1.0, 1.1]             (token 1 clipped)
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
LOGP = torch.log(torch.tensor([[1.0, 1.5, 1.0], [0.5, 1.0, 1.1]]))
OLD = torch.zeros(2, 3)
A = torch.tensor([1.0, -1.0])
GIDX = torch.tensor([0, 0])


def loss_of(c: LossConfig, **kw) -> tuple[float, dict[str, float]]:
    loss, m = policy_loss(LOGP, OLD, A, token_weights(MASK, GIDX, c), c, **kw)
    return loss.item(), m


@pytest.mark.parametrize("mode,value", [
    ("seq-mean-token-mean", (-1.14 + 0.9666667) / 2),   # seq means, then group mean
    ("token-mean", 0.62 / 5),                           # (-2.28 + 2.9) / 5 tokens
    ("seq-mean-token-sum-norm", (-0.57 + 0.725) / 2),   # token sums / norm_length 4, then mean
])
def test_aggregation_modes_with_clipping(mode: str, value: float):
    loss, m = loss_of(LossConfig(aggregation=mode, norm_length=4))
    assert abs(loss - value) < 1e-6
    assert m["clip_frac"] == pytest.approx(0.4)
    assert m["tokens"] == 5


def test_symmetric_clip_changes_value():
    # clip_high 0.2: seq0 token 2 becomes -1.2 -> token-mean (-2.2 + 2.9) / 5 = 0.14
    loss, _ = loss_of(LossConfig(aggregation="token-mean", clip_high=0.2))
    assert abs(loss - 0.14) < 1e-6


def test_seq_mean_token_mean_weights_over_groups():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    w = token_weights(mask, torch.tensor([0, 0, 1]), LossConfig())
    expect = torch.tensor([[1 / 8, 1 / 8, 0, 0], [1 / 16] * 4, [1 / 2, 0, 0, 0]])
    torch.testing.assert_close(w, expect)
    assert abs(w.sum().item() - 1.0) < 1e-6


# old/rollout ratio r: seq0 = 3, seq1 = 0.5. Uncorrected token-mean loss (-2.28 + 2.9) / 5 = 0.124.
ROLL = torch.tensor([[math.log(1 / 3)] * 3, [math.log(2.0)] * 3])


@pytest.mark.parametrize("conf,value,is_frac", [
    (dict(is_correction="tis", tis_cap=2.0), (2 * -2.28 + 0.5 * 2.9) / 5, 2 / 5),  # seq0 capped at 2, seq1 x 0.5
    (dict(is_correction="tis", tis_cap=5.0), (3 * -2.28 + 0.5 * 2.9) / 5, 0.0),
    (dict(is_correction="icepop", icepop_low=0.6), 3 * -2.28 / 5, 3 / 5),  # seq1 (r = 0.5 < 0.6) dropped
    (dict(is_correction="icepop", icepop_high=2.5), 0.5 * 2.9 / 5, 2 / 5),  # seq0 (r = 3 > 2.5) dropped
    (dict(is_correction="icepop"), (3 * -2.28 + 0.5 * 2.9) / 5, 0.0),  # both inside [0.5, 5]: plain IS
    (dict(is_correction="off"), 0.124, 0.0),
    (dict(), 0.124, 0.0),  # auto outside the RL loop = off (the loop resolves it for rl.mode)
])
def test_train_inference_corrections(conf: dict, value: float, is_frac: float):
    loss, m = loss_of(LossConfig(aggregation="token-mean", **conf), rollout_logp=ROLL)
    assert abs(loss - value) < 1e-6 and abs(m["is_frac"] - is_frac) < 1e-6


def test_correction_auto_follows_the_rl_mode():
    assert [correction_name(LossConfig(), m) for m in ("sync", "one-step-off", "async")] == ["off", "tis", "tis"]
    assert correction_name(LossConfig(is_correction="icepop"), "async") == "icepop"
    assert correction_name(LossConfig(is_correction="off"), "async") == "off"


@pytest.mark.parametrize("est,k", [("k1", 0.5), ("k2", 0.125), ("k3", 0.1065307)])
def test_kl_estimators(est: str, k: float):
    loss, _ = loss_of(LossConfig(aggregation="token-mean", kl_coef=0.1, kl_estimator=est), ref_logp=LOGP - 0.5)
    assert abs(loss - (0.124 + 0.1 * k)) < 1e-6


def test_entropy_bonus_and_metrics():
    ent = torch.full((2, 3), 2.0)
    loss, m = loss_of(LossConfig(aggregation="token-mean", entropy_coef=0.01), entropy=ent)
    assert abs(loss - (0.124 - 0.02)) < 1e-6
    assert m["entropy"] == pytest.approx(2.0)
    # approx_kl = mean 0.5*(logp-old)^2 over the 5 response tokens
    expect = sum(0.5 * math.log(x) ** 2 for x in (1.0, 1.5, 0.5, 1.0, 1.1)) / 5
    assert m["approx_kl"] == pytest.approx(expect)


def test_ratio_one_gradient_is_advantage_weighted_logprob():
    logp = LOGP.clone().requires_grad_(True)
    c = LossConfig(aggregation="token-mean")
    loss, _ = policy_loss(logp, logp.detach(), A, token_weights(MASK, GIDX, c), c)
    loss.backward()
    torch.testing.assert_close(logp.grad, -A[:, None] * MASK / 5)


def test_collate_layout_and_skip():
    rollouts = [Rollout("a", 0, [5, 6], [7, 8, 9], [-0.1, -0.2, -0.3], "", "stop", 3),
                Rollout("a", 1, [5, 6], [10], [-0.4], "", "stop", 3),
                Rollout("b", 0, [11], [12, 13], [-0.5, -0.6], "", "stop", 3),
                Rollout("b", 1, [11], [14], [-0.7], "", "stop", 3)]
    samples = score(rollouts, [1.0, 0.0, 1.0, 1.0], LossConfig(mgpo_lambda=0.0))  # the loop's one computation
    assert [r.reward for r in samples] == [1.0, 0.0, 1.0, 1.0] and rollouts[0].advantage == 0.0  # copies
    b = collate(samples, LossConfig(mgpo_lambda=0.0), pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 6, 10, 0, 0], [11, 12, 13, 0, 0], [11, 14, 0, 0, 0]]
    assert b.attention_mask.tolist() == [[1] * 5, [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert b.loss_mask.tolist() == [[0, 0, 1, 1, 1], [0, 0, 1, 0, 0], [0, 1, 1, 0, 0], [0, 1, 0, 0, 0]]
    torch.testing.assert_close(b.rollout_logp[0], torch.tensor([0, 0, -0.1, -0.2, -0.3]))
    # group a: rewards [1, 0] -> mean .5, std .5 -> A = [1, -1] (eps 1e-6); group b: all correct -> 0, skipped
    torch.testing.assert_close(b.advantages, torch.tensor([1.0, -1.0, 0.0, 0.0]), atol=1e-5, rtol=0)
    assert b.keep == [0, 1]
    # seq-mean-token-mean over 2 prompts: 1/(3*2*2), 1/(1*2*2), 1/(2*2*2), 1/(1*2*2)
    torch.testing.assert_close(b.weights.sum(1), torch.tensor([0.25, 0.25, 0.25, 0.25]))
    assert collate(samples, LossConfig(kl_coef=0.1), pad_id=0).keep == [0, 1, 2, 3]


def test_plan_micro_batches_token_budget_and_equal_counts():
    plan = plan_micro_batches([10, 4, 6, 3, 9], keep=[0, 1, 2, 3, 4], budget=20, world=2)
    # sorted by length: 0(10), 4(9), 2(6), 1(4), 3(3): [0, 4] = 2*10 <= 20; [2, 1, 3] = 3*6 <= 20
    assert plan == [[[0, 4]], [[2, 1, 3]]]
    plan = plan_micro_batches([10, 10, 10], keep=[0, 1, 2], budget=10, world=2)
    assert plan == [[[0], [2]], [[1], [-1]]]


def test_score_truncated_responses_and_the_dapo_overlong_penalty():
    """A response cut at max_tokens scores 0 (truncated=zero); dapo's penalty is 0 up to max_tokens - buffer,
    then linear to -1 at max_tokens, and shapes the advantage while w reads the binary rewards."""
    rs = [Rollout("a", 0, [1], [2] * 4, [0.0] * 4, "", "stop", 0),   # short, right
          Rollout("a", 1, [1], [2] * 10, [0.0] * 10, "", "length", 0),  # cut at the limit, right by its verdict
          Rollout("a", 2, [1], [2] * 9, [0.0] * 9, "", "stop", 0),    # 1 token under the limit, right
          Rollout("a", 3, [1], [2] * 3, [0.0] * 3, "", "stop", 0)]    # wrong
    kept = score(rs, [1.0, 1.0, 1.0, 0.0], LossConfig(truncated="keep", mgpo_lambda=0.0))
    assert [r.reward for r in kept] == [1.0, 1.0, 1.0, 0.0]
    zero = score(rs, [1.0, 1.0, 1.0, 0.0], LossConfig(mgpo_lambda=0.0), max_tokens=10)  # default: truncated=zero
    assert [r.reward for r in zero] == [1.0, 0.0, 1.0, 0.0]
    # rewards [1, 0, 1, 0]: mean .5, std .5 -> A = [1, -1, 1, -1]
    assert [round(r.advantage, 4) for r in zero] == [1.0, -1.0, 1.0, -1.0]
    pen = dapo_overlong(torch.tensor([4, 6, 8, 9, 10, 12]), 10, 4)  # ramp from 6 to 10
    assert pen.tolist() == [0.0, 0.0, -0.5, -0.75, -1.0, -1.0]
    c = LossConfig(mgpo_lambda=0.0, overlong="dapo", overlong_buffer=4)
    shaped = score(rs, [1.0, 1.0, 1.0, 0.0], c, max_tokens=10)
    # shaped rewards [1, 0 - 1, 1 - .75, 0] = [1, -1, .25, 0]: mean .0625, population std .7289
    r = torch.tensor([1.0, -1.0, 0.25, 0.0], dtype=torch.float64)
    want = ((r - r.mean()) / (r.std(unbiased=False) + 1e-6)).tolist()
    assert [round(x.advantage, 4) for x in shaped] == [round(x, 4) for x in want]
    assert [x.reward for x in shaped] == [1.0, 0.0, 1.0, 0.0] and all(x.mgpo_w == 1.0 for x in shaped)
    assert score(rs, [1.0, 1.0, 1.0, 0.0], c)[0].advantage == zero[0].advantage  # no limit known: no penalty
