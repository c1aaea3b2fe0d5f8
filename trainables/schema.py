"""The result row: the contract between the stages (trainables -> study -> analysis).

No torch here: the store and the analysis import this module to learn the schema.
"""

from trainables.config import TrialConfig

SCORED_SETS = ("train_recon", "test_recon", "normal", "mvg", "gmm")

# Every column of a result row and its type: the results store writes exactly this schema.
RESULT_COLUMNS = {
    "trial_id": str,
    "grid": str,
    "replicate": int,
    "search": str,
    **{name: type(field_default) for name, field_default in TrialConfig().science().items()},
    **{f"fd_{name}": float for name in SCORED_SETS},
    "fid": bool,  # True only when the features are the standard Inception pool3 ones
    "n_reference": int,  # reference (test) images; Test R reconstructs these same images
    "n_scored": int,  # samples drawn from each prior; Train R uses min(n_scored, n_train) training images
    "n_train": int,
    "n_test": int,
    "train_loss": float,
    "train_recon_bce": float,
    "test_recon_bce": float,
    "loss_history": list[float],
    "encoder_params": int,
    "decoder_params": int,
    "status": str,
    "error": str,
    "traceback": str,
    "diverged_epoch": int,
    "mvg_jitter": float,
    "gmm_components_used": int,
    "gmm_reg_covar": float,
    "gmm_converged": bool,
    "gmm_n_iter": int,
    "gmm_attempts": int,
    "gmm_error": str,
    "gmm_backend": str,  # sklearn | torch: the implementation that fitted the GMM
    "code_dead_units": int,
    "code_abs_skew": float,
    "code_excess_kurtosis": float,
    "code_std_mean": float,
    "code_mean_norm": float,
    "heldout_ll_mvg": float,
    "heldout_ll_gmm": float,
    "heldout_ll_gap_per_dim": float,
    "code_sample_dims": list[int],
    "code_sample": list[list[float]],
    "git_sha": str,
    "package_versions": str,
    "torch_version": str,
    "hostname": str,
    "device": str,
    "precision": str,  # fp32 | bf16: what the training forward ran in
    "compiled": bool,  # whether the training forward ran under torch.compile
    "train_loop": str,  # fast | plain (the DataLoader baseline)
    "started_at": str,
    "wall_s": float,
    "train_s": float,
    "eval_s": float,
    "encode_s": float,
    "prior_s": float,
    "sample_s": float,
    "score_s": float,
}
