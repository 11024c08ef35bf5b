//! SeRL's reinforcement-learning arithmetic, as the OpenRLHF code it trains
//! with computes it: KL estimators, reward shaping per advantage estimator,
//! token rewards, returns, advantage normalisation and the PPO-clip loss.
//!
//! Batches are `B` sequences of `T` response positions, row-major
//! (`x[b][t]`); `action_mask` is 1.0 on response tokens and 0.0 on padding.
//! Pure `f64` arithmetic, no ML dependency: hosts that run their own model
//! use it through the CLI (`serl advantages`) and the C ABI.

use serde::{Deserialize, Serialize};

/// How sequence rewards become advantages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// Reinforce++: returns of the token rewards, normalised over the batch.
    Reinforce,
    /// Leave-one-out baseline: reward minus the mean of the group's others.
    Rloo,
    /// Reward minus the group mean, then normalised over the batch.
    ReinforceBaseline,
    /// GRPO: (reward − group mean) / (group std + 1e-9), no batch normalisation.
    GroupNorm,
    /// Dr. GRPO: reward minus the group mean, no normalisation.
    DrGrpo,
    /// RAFT (reward-ranked fine-tuning, Dong et al. 2023): the reward itself,
    /// no baseline and no normalisation. With SeRL's 0/1 rewards only the
    /// rewarded answers are trained on, as supervised targets; nothing is
    /// pushed down. Not in OpenRLHF.
    Raft,
}

/// KL(policy ‖ reference) estimators, per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    /// log ratio.
    K1,
    /// ½ · log ratio².
    K2,
    /// exp(−log ratio) − 1 + log ratio.
    K3,
}

/// Errors in the shapes or values of an advantage computation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RlError {
    /// Arrays of different shapes, or an empty batch.
    #[error("{0}")]
    Shape(String),
    /// A value out of range (e.g. a group size that does not divide the batch).
    #[error("{0}")]
    Value(String),
}

/// Settings of one advantage computation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RlConfig {
    /// The advantage estimator.
    pub estimator: Estimator,
    /// The KL estimator.
    pub kl_estimator: KlEstimator,
    /// Weight of the KL penalty in the token rewards (≤ 0 means none).
    pub kl_coef: f64,
    /// PPO clip ε.
    pub clip_eps: f64,
    /// Responses per prompt (the group size of rloo, baselines and GRPO).
    pub n_samples_per_prompt: usize,
    /// Discount γ of the returns (SeRL: 1).
    pub gamma: f64,
    /// Sequence rewards are clipped to this range before use (SeRL: ±10).
    pub reward_clip: (f64, f64),
}

/// Everything computed for one batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RlOutput {
    /// Per-token KL estimate, `B × T` (0 on padding).
    pub kl: Vec<Vec<f64>>,
    /// Sequence rewards after the estimator's shaping, `B`.
    pub shaped_rewards: Vec<f64>,
    /// −kl_coef·KL, plus the clipped shaped reward on each last response token.
    pub token_rewards: Vec<Vec<f64>>,
    /// Returns (sums of future token rewards, discounted by γ).
    pub returns: Vec<Vec<f64>>,
    /// Advantages (returns, normalised over the batch for reinforce, rloo and
    /// reinforce_baseline).
    pub advantages: Vec<Vec<f64>>,
    /// PPO-clip loss, mean over all response tokens of the batch.
    pub policy_loss_token_mean: f64,
    /// PPO-clip loss, mean over each sequence's tokens, then over sequences.
    pub policy_loss_seq_mean: f64,
}

/// Per-token KL estimate of `log_probs` against `ref_log_probs`, 0 where masked.
pub fn kl(
    log_probs: &[f64],
    ref_log_probs: &[f64],
    mask: &[f64],
    estimator: KlEstimator,
) -> Vec<f64> {
    log_probs
        .iter()
        .zip(ref_log_probs)
        .zip(mask)
        .map(|((lp, rp), m)| {
            let lr = (lp - rp) * m;
            match estimator {
                KlEstimator::K1 => lr,
                KlEstimator::K2 => lr * lr / 2.0,
                KlEstimator::K3 => {
                    let neg = -lr;
                    neg.exp() - 1.0 - neg
                }
            }
        })
        .collect()
}

/// The estimator's reward shaping over groups of `n` consecutive sequences.
pub fn shape_rewards(rewards: &[f64], estimator: Estimator, n: usize) -> Result<Vec<f64>, RlError> {
    if matches!(estimator, Estimator::Reinforce | Estimator::Raft) {
        return Ok(rewards.to_vec());
    }
    if n == 0 || !rewards.len().is_multiple_of(n) {
        return Err(RlError::Value(format!(
            "n_samples_per_prompt {n} does not divide the batch of {} sequences",
            rewards.len()
        )));
    }
    if estimator == Estimator::Rloo && n < 2 {
        return Err(RlError::Value(
            "rloo needs at least 2 samples per prompt".into(),
        ));
    }
    let mut out = Vec::with_capacity(rewards.len());
    for group in rewards.chunks(n) {
        let sum: f64 = group.iter().sum();
        let mean = sum / n as f64;
        match estimator {
            Estimator::Rloo => out.extend(group.iter().map(|r| r - (sum - r) / (n as f64 - 1.0))),
            Estimator::ReinforceBaseline | Estimator::DrGrpo => {
                out.extend(group.iter().map(|r| r - mean))
            }
            Estimator::GroupNorm => {
                // torch's unbiased standard deviation (n − 1); NaN for n = 1 as in torch.
                let var =
                    group.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (n as f64 - 1.0);
                let std = var.sqrt();
                out.extend(group.iter().map(|r| (r - mean) / (std + 1e-9)));
            }
            Estimator::Reinforce | Estimator::Raft => unreachable!("handled above"),
        }
    }
    Ok(out)
}

/// Index of the last response token (the last 1 of the mask; the last
/// position when the mask has none, as torch's argmax of all zeros gives).
fn last_token(mask: &[f64]) -> usize {
    mask.iter()
        .rposition(|m| *m != 0.0)
        .unwrap_or(mask.len().saturating_sub(1))
}

/// Runs the whole computation for one batch.
///
/// `log_probs`/`ref_log_probs` give the KL of the sampling policy against
/// the reference; `old_log_probs`/`new_log_probs` give the PPO ratio.
#[allow(clippy::too_many_arguments)]
pub fn compute(
    config: &RlConfig,
    action_mask: &[Vec<f64>],
    rewards: &[f64],
    log_probs: &[Vec<f64>],
    ref_log_probs: &[Vec<f64>],
    old_log_probs: &[Vec<f64>],
    new_log_probs: &[Vec<f64>],
) -> Result<RlOutput, RlError> {
    let b = action_mask.len();
    if b == 0 {
        return Err(RlError::Shape("the batch is empty".into()));
    }
    if rewards.len() != b {
        return Err(RlError::Shape(format!(
            "rewards has {} entries for {b} sequences",
            rewards.len()
        )));
    }
    for (name, x) in [
        ("log_probs", log_probs),
        ("ref_log_probs", ref_log_probs),
        ("old_log_probs", old_log_probs),
        ("new_log_probs", new_log_probs),
    ] {
        if x.len() != b {
            return Err(RlError::Shape(format!(
                "{name} has {} rows for {b} sequences",
                x.len()
            )));
        }
        for (i, (row, m)) in x.iter().zip(action_mask).enumerate() {
            if row.len() != m.len() {
                return Err(RlError::Shape(format!(
                    "{name}[{i}] has {} positions, action_mask[{i}] has {}",
                    row.len(),
                    m.len()
                )));
            }
        }
    }
    let (lo, hi) = config.reward_clip;
    if lo > hi {
        return Err(RlError::Value(format!("reward_clip [{lo}, {hi}] is empty")));
    }
    let kl_coef = if config.kl_coef <= 0.0 {
        0.0
    } else {
        config.kl_coef
    };

    let kl: Vec<Vec<f64>> = (0..b)
        .map(|i| {
            kl(
                &log_probs[i],
                &ref_log_probs[i],
                &action_mask[i],
                config.kl_estimator,
            )
        })
        .collect();
    let shaped = shape_rewards(rewards, config.estimator, config.n_samples_per_prompt)?;

    let mut token_rewards = Vec::with_capacity(b);
    let mut returns = Vec::with_capacity(b);
    for i in 0..b {
        let mask = &action_mask[i];
        let mut tr: Vec<f64> = kl[i].iter().map(|k| -kl_coef * k).collect();
        if !tr.is_empty() {
            let last = last_token(mask);
            tr[last] += shaped[i].clamp(lo, hi);
        }
        // Returns of the masked token rewards.
        let mut ret = vec![0.0; tr.len()];
        let mut acc = 0.0;
        for t in (0..tr.len()).rev() {
            acc = mask[t] * tr[t] + config.gamma * acc;
            ret[t] = acc;
        }
        token_rewards.push(tr);
        returns.push(ret);
    }

    let mut advantages = returns.clone();
    if matches!(
        config.estimator,
        Estimator::Reinforce | Estimator::Rloo | Estimator::ReinforceBaseline
    ) {
        // Global normalisation over every response token of the batch.
        let n: f64 = action_mask.iter().flatten().sum();
        let mean = advantages
            .iter()
            .flatten()
            .zip(action_mask.iter().flatten())
            .map(|(a, m)| a * m)
            .sum::<f64>()
            / n;
        let var = advantages
            .iter()
            .flatten()
            .zip(action_mask.iter().flatten())
            .map(|(a, m)| (a - mean) * (a - mean) * m)
            .sum::<f64>()
            / n;
        let rstd = 1.0 / var.max(1e-8).sqrt();
        for a in advantages.iter_mut().flatten() {
            *a = (*a - mean) * rstd;
        }
    }

    // PPO clip.
    let mut token_sum = 0.0;
    let mut token_count = 0.0;
    let mut seq_sum = 0.0;
    for i in 0..b {
        let mut s = 0.0;
        let mut c = 0.0;
        for t in 0..action_mask[i].len() {
            let ratio = (new_log_probs[i][t] - old_log_probs[i][t]).exp();
            let adv = advantages[i][t];
            let surr1 = ratio * adv;
            let surr2 = ratio.clamp(1.0 - config.clip_eps, 1.0 + config.clip_eps) * adv;
            let loss = -surr1.min(surr2);
            let m = action_mask[i][t];
            s += loss * m;
            c += m;
        }
        token_sum += s;
        token_count += c;
        seq_sum += s / c;
    }
    Ok(RlOutput {
        kl,
        shaped_rewards: shaped,
        token_rewards,
        returns,
        advantages,
        policy_loss_token_mean: token_sum / token_count,
        policy_loss_seq_mean: seq_sum / b as f64,
    })
}

/// One advantage computation as JSON hosts send it (the CLI's
/// `serl advantages` and the C ABI's `serl_advantages`): the fields of
/// `rl.jsonl`'s inputs. `clip_eps` defaults to 0.2, `gamma` to 1,
/// `reward_clip` to [−10, 10]; without `old_log_probs` / `new_log_probs`
/// the policy is its own old policy (ratio 1).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AdvantageRequest {
    /// The advantage estimator.
    pub estimator: Estimator,
    /// The KL estimator.
    pub kl_estimator: KlEstimator,
    /// Weight of the KL penalty.
    pub kl_coef: f64,
    /// PPO clip ε.
    #[serde(default = "default_clip_eps")]
    pub clip_eps: f64,
    /// Responses per prompt.
    pub n_samples_per_prompt: usize,
    /// Discount of the returns.
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// Clip range of the sequence rewards.
    #[serde(default = "default_reward_clip")]
    pub reward_clip: (f64, f64),
    /// 1.0 on response tokens, `B × T`.
    pub action_mask: Vec<Vec<f64>>,
    /// One reward per sequence, `B`.
    pub rewards: Vec<f64>,
    /// Log-probabilities of the sampled tokens under the policy, `B × T`.
    pub log_probs: Vec<Vec<f64>>,
    /// The same under the reference model, `B × T`.
    pub ref_log_probs: Vec<Vec<f64>>,
    /// Under the policy that sampled (PPO's old policy); default `log_probs`.
    #[serde(default)]
    pub old_log_probs: Option<Vec<Vec<f64>>>,
    /// Under the policy being updated; default `old_log_probs`.
    #[serde(default)]
    pub new_log_probs: Option<Vec<Vec<f64>>>,
}

fn default_clip_eps() -> f64 {
    0.2
}

fn default_gamma() -> f64 {
    1.0
}

fn default_reward_clip() -> (f64, f64) {
    (-10.0, 10.0)
}

impl AdvantageRequest {
    /// Runs [`compute`] on this request.
    pub fn compute(&self) -> Result<RlOutput, RlError> {
        let config = RlConfig {
            estimator: self.estimator,
            kl_estimator: self.kl_estimator,
            kl_coef: self.kl_coef,
            clip_eps: self.clip_eps,
            n_samples_per_prompt: self.n_samples_per_prompt,
            gamma: self.gamma,
            reward_clip: self.reward_clip,
        };
        let old = self.old_log_probs.as_ref().unwrap_or(&self.log_probs);
        let new = self.new_log_probs.as_ref().unwrap_or(old);
        compute(
            &config,
            &self.action_mask,
            &self.rewards,
            &self.log_probs,
            &self.ref_log_probs,
            old,
            new,
        )
    }
}
