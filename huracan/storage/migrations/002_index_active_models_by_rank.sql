-- get_active_models without a coin filter: every active row, best Sharpe first
CREATE INDEX IF NOT EXISTS models_active_global_rank_idx
    ON models (sharpe_ratio DESC, version DESC, coin)
    WHERE status = 'active';
