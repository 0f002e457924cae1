"""Every metric ngac logs, in one place: its name, its unit and what it means.

Metrics are logged against environment frames (the MLflow ``step``). The prefixes group them in
the MLflow UI: ``charts/`` (progress), ``losses/`` (optimisation), ``curvature/`` (the backend's
direction, natural-gradient agent only), ``perf/`` (where the wall-clock goes), ``eval/``
(deterministic evaluation episodes). The README's metric table is generated from :data:`METRICS`
(a test keeps the two equal).
"""

from __future__ import annotations

# --- progress
EPISODE_RETURN = "charts/episode_return"
EPISODE_LENGTH = "charts/episode_length"
SPS = "charts/sps"
FRAMES = "charts/frames"
SKIPPED_UPDATES = "charts/skipped_updates"

# --- optimisation (both agents)
VALUE_LOSS = "losses/value_loss"
EXPLAINED_VARIANCE = "losses/explained_variance"
APPROX_KL = "losses/approx_kl"
ENTROPY = "losses/entropy"
# natural-gradient agent
SURROGATE_GAIN = "losses/surrogate_gain"
# PPO
POLICY_LOSS = "losses/policy_loss"
CLIPFRAC = "losses/clipfrac"

# --- the curvature backend's direction and the step rule (natural-gradient agent)
CURVATURE_PREFIX = "curvature/"
ETA = "curvature/eta"
BACKTRACKS = "curvature/backtracks"

# --- wall-clock of one batch
COLLECT_MS = "perf/collect_ms"
GAE_MS = "perf/gae_ms"
CRITIC_MS = "perf/critic_ms"
UPDATE_MS = "perf/update_ms"

# --- evaluation
EVAL_RETURN = "eval/episode_return"
EVAL_RETURN_STD = "eval/episode_return_std"
EVAL_BEST = "eval/best_episode_return"
EVAL_EPISODES = "eval/episodes"
EVAL_LENGTH = "eval/episode_length"
EVAL_SECONDS = "eval/seconds"

#: name -> (unit, meaning); the ``curvature/*`` rows come from the backends (Direction.metrics).
METRICS: dict[str, tuple[str, str]] = {
    EPISODE_RETURN: ("return", "mean undiscounted return of the episodes that ended in this batch (raw reward)"),
    EPISODE_LENGTH: ("steps", "mean length of those episodes"),
    SPS: ("frames/s", "environment frames per second over the last batch, update included"),
    FRAMES: ("frames", "environment frames so far"),
    SKIPPED_UPDATES: ("count", "updates refused because something was non-finite, so far"),
    VALUE_LOSS: ("loss", "critic MSE to the GAE value targets (mean over minibatches)"),
    EXPLAINED_VARIANCE: (
        "ratio",
        "1 - Var(target - value) / Var(target), value = the critic as GAE used it, before its update",
    ),
    APPROX_KL: ("nats", "mean KL(old policy || new policy) on the batch after the step"),
    ENTROPY: ("nats", "mean policy entropy on the batch before the step"),
    SURROGATE_GAIN: ("advantage", "measured improvement of the importance-weighted surrogate by the step"),
    POLICY_LOSS: ("loss", "PPO clipped objective (mean over minibatches)"),
    CLIPFRAC: ("ratio", "PPO: fraction of samples whose ratio was clipped"),
    "curvature/lambda": ("-", "damping used for this direction"),
    "curvature/direction_norm": ("-", "|d|, the backend's direction before the step size"),
    "curvature/dFd": ("-", "d^T F d under the Fisher the backend solved with"),
    "curvature/direction_ms": ("ms", "time the backend took to produce the direction"),
    "curvature/cos_to_gradient": ("cosine", "cosine between the direction and the plain policy gradient g"),
    "curvature/cos_to_natural": ("cosine", "cosine to the CG solution of (F + lambda I) x = g (every diagnose_every)"),
    "curvature/cos_to_natural_fisher": ("cosine", "the same cosine in the Fisher inner product"),
    "curvature/diagnose_ms": ("ms", "time of that diagnostic CG solve"),
    ETA: ("-", "step size applied by the step rule: theta += eta * d"),
    BACKTRACKS: ("count", "line-search halvings of eta"),
    COLLECT_MS: ("ms", "collecting the batch (environments + policy + transforms)"),
    GAE_MS: ("ms", "advantages and value targets"),
    CRITIC_MS: ("ms", "critic regression (natural-gradient agent)"),
    UPDATE_MS: ("ms", "the whole optimisation of the batch: critic and actor (PPO: all its epochs)"),
    EVAL_RETURN: ("return", "mean return of the deterministic evaluation episodes"),
    EVAL_RETURN_STD: ("return", "their standard deviation"),
    EVAL_EPISODES: ("count", "episodes in this evaluation (the standard error is std / sqrt(episodes))"),
    EVAL_BEST: ("return", "the highest eval/episode_return of the run so far (kept across resume)"),
    EVAL_LENGTH: ("steps", "their mean length"),
    EVAL_SECONDS: ("s", "wall-clock of the evaluation"),
}


def markdown_table() -> str:
    """The README's metric table."""
    rows = ["| metric | unit | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | {unit} | {meaning} |" for name, (unit, meaning) in METRICS.items()]
    return "\n".join(rows)
