-- Model registry: one row per (coin, version). Applied by PostgresModelRegistryStore with
-- search_path set to the registry's schema, inside one transaction under an advisory lock.
CREATE TABLE IF NOT EXISTS models (
    coin                TEXT             NOT NULL,
    version             BIGINT           NOT NULL CHECK (version >= 1),
    sharpe_ratio        DOUBLE PRECISION NOT NULL,
    win_rate            DOUBLE PRECISION NOT NULL CHECK (win_rate >= 0 AND win_rate <= 1),
    regime              TEXT,
    performance_metrics JSONB            NOT NULL DEFAULT '{}'::jsonb,
    model_path          TEXT             NOT NULL,
    sha256              CHAR(64)         NOT NULL,
    status              TEXT             NOT NULL
                        CHECK (status IN ('active', 'inactive', 'retired')),
    created_at          TIMESTAMPTZ      NOT NULL,
    updated_at          TIMESTAMPTZ      NOT NULL,
    -- UNIQUE (coin, version), as the primary key: a second registration of the same version
    -- fails with SQLSTATE 23505 (unique_violation) -> ModelAlreadyRegistered
    CONSTRAINT models_pkey PRIMARY KEY (coin, version)
);

-- get_active_models: active rows by coin, best Sharpe first, newer version on ties
CREATE INDEX IF NOT EXISTS models_active_rank_idx
    ON models (coin, sharpe_ratio DESC, version DESC)
    WHERE status = 'active';
